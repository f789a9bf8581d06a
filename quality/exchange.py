"""Move review datasets between Argilla servers and files with the SDK's own formats.

- Disk: ``Dataset.to_disk`` / ``Dataset.from_disk`` (``.argilla/dataset.json``, ``.argilla/settings.json``,
  ``records.json`` with the responses). A team exports a sample here and imports the annotated copy
  back on the machine that pulls the report.
- Hub: ``Dataset.to_hub`` / ``Dataset.from_hub`` (a dataset repo with ``data/*.parquet`` holding
  records and responses, and the ``.argilla/`` settings), so reviewers can work on a Hub Space.
  ``export_to_hub(..., dry_run=FOLDER)`` writes into FOLDER what ``to_hub`` would upload (the records
  as parquet, the ``.argilla`` files) without the network; ``import_from_hub_folder`` reads such a
  folder (or a local clone of the repo) back through the SDK's own record mapping.

Responses keep their annotators' user ids: import them into a server that knows those users (the
SDK assigns responses of unknown users to the importing user). ``export_to_disk`` adds each
response's status to ``records.json``, which argilla 2.8's ``to_disk`` leaves out (every answer would
come back as a draft); ``from_disk`` reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from medinjection.quality.review import find_dataset

if TYPE_CHECKING:
    import argilla as rg

HUB_DATA_FILE = "data/train-00000-of-00001.parquet"


class ExchangeError(RuntimeError):
    pass


def _empty_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ExchangeError(f"{folder} is not empty; export into a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)  # to_disk needs an existing directory
    return folder


def export_to_disk(client: rg.Argilla, name: str, folder: str | Path, workspace: str | None = None) -> Path:
    """``Dataset.to_disk`` of dataset ``name`` (settings and records with their responses) into ``folder``."""
    dataset = find_dataset(client, name, workspace)
    folder = _empty_folder(folder)
    dataset.to_disk(str(folder))
    _add_response_status(dataset, folder / "records.json")
    return folder


def _add_response_status(dataset: rg.Dataset, path: Path) -> None:
    """Write each response's status into ``records.json``.

    argilla 2.8's ``Record.to_dict`` leaves the status out of the responses, so ``from_disk`` would
    bring every submitted answer back as a draft; ``Record.from_dict`` reads a ``status`` key when it
    is there, so adding it keeps the file in the SDK's own format.
    """
    status = {
        (record.id, response.question_name, str(response.user_id)): getattr(
            response.status, "value", response.status
        )
        for record in dataset.records(with_responses=True, with_suggestions=False)
        for response in record.responses
    }
    rows = json.loads(path.read_text(encoding="utf-8"))
    for row in rows:
        for question, responses in (row.get("responses") or {}).items():
            for response in responses:
                response["status"] = status[(row["id"], question, response["user_id"])]
    path.write_text(json.dumps(rows), encoding="utf-8")


def import_from_disk(
    client: rg.Argilla, folder: str | Path, name: str | None = None, workspace: str | None = None
) -> rg.Dataset:
    """``Dataset.from_disk``: create the dataset (or reuse one of that name) and log the records and responses."""
    import argilla as rg

    folder = Path(folder)
    if not (folder / ".argilla" / "dataset.json").is_file():
        raise ExchangeError(
            f"{folder}: no .argilla/dataset.json (not a folder written by export / Dataset.to_disk)"
        )
    return rg.Dataset.from_disk(
        str(folder), name=name, workspace=workspace or _default_workspace(client), client=client
    )


def export_to_hub(
    client: rg.Argilla,
    name: str,
    repo_id: str,
    workspace: str | None = None,
    *,
    private: bool = True,
    token: str | None = None,
    dry_run: str | Path | None = None,
) -> Path | None:
    """``Dataset.to_hub(repo_id)``; with ``dry_run``, write what would be uploaded into that folder instead."""
    dataset = find_dataset(client, name, workspace)
    if dry_run is None:
        dataset.to_hub(repo_id, private=private, token=token)
        return None
    folder = _empty_folder(dry_run)
    records = dataset.records(with_vectors=True, with_responses=True, with_suggestions=True).to_datasets()
    (folder / HUB_DATA_FILE).parent.mkdir(parents=True)
    records.to_parquet(str(folder / HUB_DATA_FILE))
    dataset.to_disk(str(folder), with_records=False)
    return folder


def import_from_hub(
    client: rg.Argilla,
    repo_id: str,
    name: str | None = None,
    workspace: str | None = None,
    token: str | None = None,
) -> rg.Dataset:
    """``Dataset.from_hub(repo_id, settings="auto")``: settings from the repo's ``.argilla``, records with responses."""
    import argilla as rg

    return rg.Dataset.from_hub(
        repo_id,
        name=name,
        workspace=workspace or _default_workspace(client),
        client=client,
        settings="auto",
        split="train",
        token=token,
    )


def import_from_hub_folder(
    client: rg.Argilla, folder: str | Path, name: str | None = None, workspace: str | None = None
) -> rg.Dataset:
    """What ``import_from_hub`` does, from a local folder laid out like the Hub repo (a dry run or a clone)."""
    import argilla as rg
    from datasets import load_dataset

    folder = Path(folder)
    files = sorted(str(p) for p in (folder / "data").glob("*.parquet"))
    if not files:
        raise ExchangeError(f"{folder}: no data/*.parquet (not a folder written by export --hub --dry-run)")
    dataset = import_from_disk(client, folder, name=name, workspace=workspace)
    records = load_dataset("parquet", data_files=files, split="train")
    # The SDK's own mapping of Hub rows (fields, metadata, responses per user) to records.
    rg.Dataset._log_dataset_records(hf_dataset=records, dataset=dataset)
    return dataset


def _default_workspace(client: rg.Argilla) -> str:
    workspace = client.workspaces.default
    if workspace is None:
        raise ExchangeError("the Argilla server has no workspace; create one or pass --workspace")
    return workspace.name
