"""Loading a mix by config name: local folder fingerprint, mixes.json types and chat version, the
validation split cut to the mix's types, the Hub revision read from resolved paths, clear errors."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from medinjection.training.data import DataError, load_training_data, resolved_hub_revision


def test_local_mix_loads_with_a_fingerprint_of_every_file_read(demo_dataset):
    data = load_training_data(str(demo_dataset), "nat_trad")
    info = data.info
    assert info["kind"] == "local" and info["revision"] is None
    assert (
        info["mix"]["size"]
        == len(data.train)
        == json.loads((demo_dataset / "mixes.json").read_text())["mixes"]["nat_trad"]["train"]
    )
    files = info["fingerprint"]["files"]
    assert "data/nat_trad/train-00000.parquet" in files
    assert any(name.startswith("data/translated/validation-") for name in files)
    for name, sha in files.items():
        assert hashlib.sha256((demo_dataset / name).read_bytes()).hexdigest() == sha
    mixes = json.loads((demo_dataset / "mixes.json").read_text())
    assert info["chat_version"] == "v1" == mixes.get("chat_version", "v1")
    assert info["mix"]["types"] == mixes.get("types", sorted(set(data.train["type"])))


def test_without_mixes_json_types_come_from_the_data_and_the_version_from_the_records(demo_copy):
    (demo_copy / "mixes.json").unlink()
    data = load_training_data(str(demo_copy), "nat")
    assert data.info["mix"]["types"] == sorted(set(data.train["type"]))
    assert data.info["mix"]["from_mixes_json"] is False
    assert (data.info["chat_version"], data.info["chat_version_source"]) == (
        "v1",
        "recognised from the records",
    )


def test_fingerprint_and_data_change_when_a_file_changes(demo_copy):
    """`datasets` caches a folder's named config under the folder's name: a rebuilt folder must not be
    read from the old cache (the fingerprint would then name files the run did not train on)."""
    first = load_training_data(str(demo_copy), "nat")
    import pyarrow.parquet as pq

    path = demo_copy / "data" / "nat" / "train-00000.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[0]["messages"][2]["content"] = "Z"  # another answer, the same number of rows
    pq.write_table(pq.read_table(path).from_pylist(rows, schema=pq.read_schema(path)), path)
    second = load_training_data(str(demo_copy), "nat")
    assert second.info["fingerprint"]["sha256"] != first.info["fingerprint"]["sha256"]
    assert second.train[0]["messages"][2]["content"] == "Z" != first.train[0]["messages"][2]["content"]


def test_types_and_chat_version_come_from_mixes_json_and_cut_the_validation_split(demo_copy):
    manifest = json.loads((demo_copy / "mixes.json").read_text())
    manifest["mixes"]["syn"]["types"] = ["MCQU"]  # a mix's own types (a mix file gives each mix its own)
    manifest["chat_version"] = "v1"
    (demo_copy / "mixes.json").write_text(json.dumps(manifest))
    data = load_training_data(str(demo_copy), "syn")
    assert data.info["mix"]["types"] == ["MCQU"]
    assert data.info["chat_version_source"] == "mixes.json"
    assert set(data.eval["type"]) == {"MCQU"}
    counts = data.info["splits"]["validation"]
    assert counts["used"] == len(data.eval) < counts["rows"]  # the demo's validation has MCQ and OEQ items


def test_unknown_config_and_missing_split_are_named(demo_dataset):
    with pytest.raises(DataError, match=r"no config 'nat-trad'.*nat_trad"):
        load_training_data(str(demo_dataset), "nat-trad")
    with pytest.raises(DataError, match="no dev split"):
        load_training_data(str(demo_dataset), "nat", eval_split="dev")
    with pytest.raises(DataError, match="dataset_config"):
        load_training_data(str(demo_dataset), "")


def test_hub_revision_is_read_from_the_resolved_data_files():
    sha = "a" * 40
    files = {
        "train": [f"hf://datasets/org/medinjection-fr@{sha}/data/nat/train-00000.parquet"],
        "validation": [f"hf://datasets/org/medinjection-fr@{sha}/data/native/validation-00000.parquet"],
    }
    assert resolved_hub_revision(files) == sha
    assert resolved_hub_revision({"train": ["/local/data/nat/train-00000.parquet"]}) is None
    with pytest.raises(DataError, match="several commits"):
        resolved_hub_revision({**files, "test": [f"hf://datasets/org/medinjection-fr@{'b' * 40}/x.parquet"]})


def test_an_unreachable_hub_dataset_fails_at_the_network_call():
    """A Hub repo id goes to the Hub (offline here): the real code path up to the download."""
    with pytest.raises(ConnectionError, match="medinjection-tests/no-such-dataset"):
        load_training_data("medinjection-tests/no-such-dataset", "nat", revision="0" * 40)


def test_a_chat_version_that_cannot_be_told_is_an_error_naming_what_is_missing(demo_copy):
    import pyarrow.parquet as pq

    (demo_copy / "mixes.json").unlink()
    path = demo_copy / "data" / "nat" / "train-00000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["instruction"]), path)
    with pytest.raises(DataError) as error:
        load_training_data(str(demo_copy), "nat")
    message = str(error.value)
    assert str(demo_copy) in message and "config 'nat'" in message and "no mixes.json" in message
    assert f"v1: record {table['id'][0]} cannot be rendered" in message  # its instruction is gone

    rows = table.to_pylist()
    for row in rows:
        row["messages"][0]["content"] = "Tu es un assistant."  # another system prompt than v1's
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), path)
    (demo_copy / "mixes.json").write_text(json.dumps({"mixes": {}}))  # a mixes.json without chat_version
    with pytest.raises(DataError, match=r"mixes.json has no chat_version.*not its v1 rendering"):
        load_training_data(str(demo_copy), "nat")


def test_a_corrupt_mixes_json_is_named(demo_copy):
    (demo_copy / "mixes.json").write_text('{"mixes": {"nat": ')
    with pytest.raises(DataError, match=r"mixes\.json.*not valid JSON"):
        load_training_data(str(demo_copy), "nat")
    (demo_copy / "mixes.json").write_text("[]")
    with pytest.raises(DataError, match="must be a JSON object"):
        load_training_data(str(demo_copy), "nat")


def test_a_corrupt_shard_is_one_line_naming_the_file(demo_copy, tiny_model, tiny_argv, tmp_path):
    """A truncated Parquet file: `datasets` raises a 66-line DatasetGenerationError; training says one line."""
    from typer.testing import CliRunner

    from medinjection.cli import app

    path = demo_copy / "data" / "nat" / "train-00000.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + data[-8:])  # cut in the middle, its footer kept
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(path))}: not a readable Parquet file .*train split"
    ):
        load_training_data(str(demo_copy), "nat")
    result = CliRunner().invoke(
        app, ["train", *tiny_argv("nat", demo_copy, tiny_model, tmp_path / "run")], catch_exceptions=False
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {path}: not a readable Parquet file" + lines[0].split("Parquet file", 1)[1]]


def test_an_altered_shard_is_named_against_what_the_build_recorded(demo_copy):
    """A valid Parquet file with other rows: `datasets` raises NonMatchingSplitsSizesError; the mix's
    shard is named by its sha256 in mixes.json, a shared split's by the split's files."""
    import pyarrow.parquet as pq

    shard = demo_copy / "data" / "nat" / "train-00000.parquet"
    table, original = pq.read_table(shard), shard.read_bytes()
    pq.write_table(table.slice(0, table.num_rows - 2), shard)
    with pytest.raises(DataError) as error:
        load_training_data(str(demo_copy), "nat")
    message = str(error.value)
    assert "\n" not in message and f"its train split holds {table.num_rows - 2} rows" in message
    assert f"its README records {table.num_rows}" in message
    assert message.split("wrote it: ")[1].startswith("data/nat/train-00000.parquet;")
    shard.write_bytes(original)  # restored
    shared = sorted((demo_copy / "data" / "native").glob("validation-*.parquet"))[-1]
    rows = pq.read_table(shared)
    pq.write_table(rows.slice(0, rows.num_rows - 1), shared)
    with pytest.raises(
        DataError, match=r"its validation split holds \d+ rows where its README records"
    ) as error:
        load_training_data(str(demo_copy), "nat")
    message = str(error.value)
    assert "a file of the validation split changed" in message and f"data/native/{shared.name}" in message
    assert "\n" not in message and "medinjection mix` wrote it" not in message
