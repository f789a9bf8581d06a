"""Publishing: the commit plan (local files vs a remote listing), refusals, dry-run, the token never
shown, and an opt-in live push.

Up to the network call everything runs for real. Where a Hub answer is needed, a small local HTTP
server stands in for the Hub's tree-listing endpoint (it answers only that endpoint; any other call,
such as a commit, gets a 500), so the real ``HfApi`` client parses a real listing."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.core.hub import LocalFile, PublishError, RemoteFile, hashes, plan_commit, redact
from medinjection.publish.dataset import check_folder, local_files, publish_dataset, selection

SENTINEL = "hf_SENTINELtoken0123456789abcdefXYZ"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    import importlib.util

    from medinjection.dataset_builders.mixes import build_mixes

    spec = importlib.util.spec_from_file_location(
        "_build_fixture", Path(__file__).parent / "cards" / "build_fixture.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fixture_build = module.fixture_build
    root = fixture_build(tmp_path_factory.mktemp("pub"))
    build_mixes(root, size=15)
    return root


def copy(root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(root, target)
    return target


# ---- the plan ---------------------------------------------------------------------------------


def test_hashes_match_git(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("données\n".encode() * 1000)
    sha256, sha1 = hashes(path)
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    if shutil.which("git"):
        assert (
            sha1
            == subprocess.run(
                ["git", "hash-object", str(path)], capture_output=True, text=True, check=True
            ).stdout.strip()
        )


def local(path: str, data: bytes) -> LocalFile:
    git = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
    return LocalFile(path, Path("/nowhere") / path, len(data), hashlib.sha256(data).hexdigest(), git)


def test_plan_adds_changes_deletes_and_keeps_gitattributes():
    files = {
        f.path_in_repo: f
        for f in [
            local("README.md", b"card"),
            local("data/a/train-00000.parquet", b"new"),
            local("stats.json", b"{}"),
        ]
    }
    remote = {
        "README.md": RemoteFile("README.md", 4, files["README.md"].git_sha1),  # regular file, same blob
        "data/a/train-00000.parquet": RemoteFile(
            "data/a/train-00000.parquet", 3, "x", hashlib.sha256(b"old").hexdigest()
        ),
        "data/old/train-00000.parquet": RemoteFile("data/old/train-00000.parquet", 1, "y", "z"),
        ".gitattributes": RemoteFile(".gitattributes", 10, "g"),
    }
    plan = plan_commit(files, remote)
    assert plan.add == ["stats.json"]
    assert plan.change == ["data/a/train-00000.parquet"]
    assert plan.delete == ["data/old/train-00000.parquet"]
    assert plan.unchanged == ["README.md"]
    assert plan.lines() == [
        "add stats.json",
        "change data/a/train-00000.parquet",
        "delete data/old/train-00000.parquet",
    ]
    # an LFS file with the same sha256 is unchanged; a regular file with another blob is changed
    same = {
        "data/a/train-00000.parquet": RemoteFile(
            "data/a/train-00000.parquet", 3, "x", files["data/a/train-00000.parquet"].sha256
        ),
        "README.md": RemoteFile("README.md", 4, "0" * 40),
        "stats.json": RemoteFile("stats.json", 2, files["stats.json"].git_sha1),
    }
    plan = plan_commit(files, same)
    assert plan.change == ["README.md"] and not plan.add and not plan.delete
    assert plan_commit(files, {p: RemoteFile(p, f.size, f.git_sha1) for p, f in files.items()}).empty
    assert plan_commit(files, None).add == sorted(files)


def test_selection_leaves_out_build_rejects_and_hidden_files(built):
    (built / ".cache").mkdir(exist_ok=True)
    (built / ".cache" / "x").write_text("x")
    paths = selection(built)
    assert (
        "README.md" in paths
        and "stats.json" in paths
        and "mixes.json" in paths
        and "cards/native.md" in paths
    )
    assert any(p.startswith("data/all/") for p in paths) and any(p.startswith("data/native/") for p in paths)
    assert not any(p.startswith(("_build/", "rejects/", ".cache")) for p in paths)
    subset = selection(built, "native")
    assert subset["README.md"] == built / "cards" / "native.md"
    assert set(subset) - {"README.md"} == {
        str(p.relative_to(built)) for p in (built / "data" / "native").glob("*.parquet")
    }


# ---- refusals -----------------------------------------------------------------------------------


def test_a_consistent_folder_passes(built):
    assert check_folder(built) == []


def test_refuses_stats_that_do_not_match_the_files(built, tmp_path):
    root = copy(built, tmp_path)
    stats = json.loads((root / "stats.json").read_text())
    stats["composition"][0]["count"] += 1
    (root / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(PublishError, match="stats.json says"):
        publish_dataset(root, "org/x", dry_run=True, endpoint="http://127.0.0.1:9")


def test_refuses_an_edited_card(built, tmp_path):
    root = copy(built, tmp_path)
    (root / "README.md").write_text(
        (root / "README.md").read_text().replace("license: apache-2.0", "license: other")
    )
    problems = check_folder(root)
    assert any("license" in p for p in problems) and any("does not match the data" in p for p in problems)


def test_refuses_a_missing_card(built, tmp_path):
    root = copy(built, tmp_path)
    (root / "README.md").unlink()
    assert any("README.md: missing" in p for p in check_folder(root))


def test_refuses_a_mix_with_a_non_train_row(built, tmp_path):
    root = copy(built, tmp_path)
    path = next((root / "data" / "nat").glob("train-*.parquet"))
    table = pq.read_table(path)
    validation = pq.read_table(next((root / "data" / "native").glob("validation-*.parquet"))).slice(0, 1)
    swapped = table.slice(1).to_pylist() + validation.to_pylist()
    # same provenance, type counts may differ: keep the type of the replaced row to isolate the check
    first_type = table.slice(0, 1).column("type")[0].as_py()
    swapped[-1]["type"] = first_type
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(swapped, schema=table.schema), path)
    problems = check_folder(root)
    assert any("not train items" in p for p in problems), problems


def test_the_licence_gate_refuses_a_source_of_unknown_licence_unless_allowed(tmp_path, hub, monkeypatch):
    import importlib.util

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # the CLI's dry run: no Hub

    spec = importlib.util.spec_from_file_location(
        "_build_fixture_lic", Path(__file__).parent / "cards" / "build_fixture.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = module.mixed_license_build(tmp_path)
    endpoint = f"http://127.0.0.1:{hub.server_port}"
    with pytest.raises(PublishError, match="unknown licence: mlabonne_medical_mcqa_fr") as err:
        publish_dataset(root, "org/lic", dry_run=True, endpoint=endpoint, echo=lambda _: None)
    assert "--allow-unknown-license" in str(err.value)
    result = CliRunner().invoke(app, ["publish", "dataset", str(root), "--repo", "org/lic", "--dry-run"])
    assert result.exit_code == 1 and "unknown licence" in result.output
    allowed = publish_dataset(
        root, "org/lic", dry_run=True, endpoint=endpoint, echo=lambda _: None, allow_unknown_license=True
    )
    assert "README.md" in allowed.plan.add
    result = CliRunner().invoke(
        app, ["publish", "dataset", str(root), "--repo", "org/lic", "--dry-run", "--allow-unknown-license"]
    )
    assert result.exit_code == 0 and "add README.md" in result.output, result.output


# ---- dry-run, the token, a stand-in Hub listing -------------------------------------------------


class HubStandIn(BaseHTTPRequestHandler):
    """Answers GET /api/datasets/<org>/<name>/tree/<rev> from ``self.server.trees``; 500 for anything else."""

    def do_GET(self):  # noqa: N802
        self.server.requests.append(("GET", self.path, dict(self.headers)))
        if self.server.get_status == 401:  # what the Hub answers a token it does not know
            return self.refuse()
        parts = self.path.split("?")[0].split("/")
        if len(parts) >= 7 and parts[1:3] == ["api", "datasets"] and parts[5] == "tree":
            repo = f"{parts[3]}/{parts[4]}"
            if repo not in self.server.trees:
                return self.reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return self.reply(200, self.server.trees[repo])
        self.reply(500, {"error": "not served by the stand-in"})

    def do_POST(self):  # noqa: N802
        self.server.requests.append(("POST", self.path, dict(self.headers)))
        if self.server.post_status == 401:
            return self.refuse()
        self.reply(500, {"error": "not served by the stand-in"})

    def refuse(self):
        message = "Invalid credentials in Authorization header"
        self.reply(401, {"error": message}, {"X-Error-Message": message})

    def reply(self, code, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), HubStandIn)
    server.trees, server.requests = {}, []
    server.get_status = server.post_status = None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def published_files(root: Path, repo: str, tmp_path: Path) -> dict[str, LocalFile]:
    """The files ``publish_dataset`` uploads to ``repo`` (its README carries the repo id)."""
    from medinjection.cards.dataset_card import render_card

    readme = tmp_path / f"{repo.replace('/', '_')}.md"
    render_card(root, repo_id=repo).save(readme)
    assert f'load_dataset("{repo}"' in readme.read_text()
    return local_files(root, readme=readme)


def tree_of(files: dict[str, LocalFile]) -> list[dict]:
    """The tree listing the Hub gives for these files (parquet as LFS, the rest as regular files)."""
    out = []
    for path, f in files.items():
        entry = {"type": "file", "oid": f.git_sha1, "size": f.size, "path": path}
        if path.endswith(".parquet"):
            entry["oid"] = "f" * 40
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 130}
        out.append(entry)
    return out


def run_capturing(caplog, capsys, fn):
    caplog.set_level(logging.DEBUG)
    try:
        fn()
        error = ""
    except PublishError as err:
        error = str(err)
    captured = capsys.readouterr()
    return captured.out + captured.err + caplog.text + error


def test_dry_run_against_a_missing_repo_lists_every_file(built, hub, capsys):
    lines = []
    result = publish_dataset(
        built, "org/new", dry_run=True, endpoint=f"http://127.0.0.1:{hub.server_port}", echo=lines.append
    )
    assert "does not exist yet" in result.listed
    assert result.plan.add == sorted(selection(built)) and not result.plan.change and not result.plan.delete
    assert {f"  add {p}" for p in selection(built)} <= set(lines)


def test_unchanged_remote_means_no_commit_and_the_token_stays_hidden(
    built, hub, monkeypatch, caplog, capsys, tmp_path
):
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    endpoint = f"http://127.0.0.1:{hub.server_port}"
    hub.trees["org/same"] = tree_of(published_files(built, "org/same", tmp_path))
    out = run_capturing(caplog, capsys, lambda: publish_dataset(built, "org/same", endpoint=endpoint))
    assert "nothing changed: no commit" in out
    assert not [r for r in hub.requests if r[0] == "POST"], "a commit was attempted"
    assert (
        hub.requests[0][2].get("authorization") == f"Bearer {SENTINEL}"
        or hub.requests[0][2].get("Authorization") == f"Bearer {SENTINEL}"
    )
    assert SENTINEL not in out


def test_a_changed_remote_plans_the_difference_and_a_failed_commit_hides_the_token(
    built, hub, monkeypatch, caplog, capsys, tmp_path
):
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    endpoint = f"http://127.0.0.1:{hub.server_port}"
    files = published_files(built, "org/changed", tmp_path)
    tree = [e for e in tree_of(files) if e["path"] != "stats.json"]
    tree.append({"type": "file", "oid": "a" * 40, "size": 3, "path": "old.txt"})
    readme = next(e for e in tree if e["path"] == "README.md")
    readme["oid"] = "b" * 40
    hub.trees["org/changed"] = tree
    result = publish_dataset(built, "org/changed", dry_run=True, endpoint=endpoint, echo=lambda _: None)
    assert (result.plan.add, result.plan.change, result.plan.delete) == (
        ["stats.json"],
        ["README.md"],
        ["old.txt"],
    )
    out = run_capturing(caplog, capsys, lambda: publish_dataset(built, "org/changed", endpoint=endpoint))
    assert "publishing to org/changed failed" in out
    assert any(method == "POST" for method, _, _ in hub.requests), "the commit path was not reached"
    assert SENTINEL not in out


def test_cli_dry_run_offline_never_shows_the_token(built, monkeypatch, caplog):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(app, ["publish", "dataset", str(built), "--repo", "org/x", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "remote unreachable" in result.output and "add README.md" in result.output
    result2 = CliRunner().invoke(app, ["publish", "dataset", str(built), "--repo", "org/x"])
    assert result2.exit_code == 1 and "cannot reach the Hub" in result2.output
    assert SENTINEL not in result.output + result2.output + caplog.text


def test_stray_files_are_not_published_and_are_listed_as_left_out(built, hub, tmp_path):
    root = copy(built, tmp_path)
    (root / "notes.txt").write_text("mes notes")
    (root / "sub").mkdir()
    (root / "sub" / "thesis.tex").write_text("\\documentclass{article}")
    (root / "data" / "native" / "notes.md").write_text("x")
    (root / "cards" / "draft.md").write_text("x")
    paths = selection(root)
    assert not {"notes.txt", "sub/thesis.tex", "data/native/notes.md", "cards/draft.md"} & set(paths)
    assert set(paths) == set(selection(built))  # exactly what the layout owns
    lines = []
    result = publish_dataset(
        root, "org/stray", dry_run=True, endpoint=f"http://127.0.0.1:{hub.server_port}", echo=lines.append
    )
    stray = {"cards/draft.md", "data/native/notes.md", "notes.txt", "sub/thesis.tex"}
    assert stray <= set(result.left_out) and not set(result.left_out) & set(paths)
    assert not any(p.startswith(("_build/", "rejects/")) for p in result.left_out)  # owned, never published
    assert set(result.plan.add) == set(paths)
    (line,) = [line for line in lines if "left out" in line]
    assert f"{len(result.left_out)} file(s)" in line and "notes.txt" in line and "sub/thesis.tex" in line


def test_a_refused_token_is_named_not_taken_for_an_unreachable_hub(built, hub, monkeypatch, caplog, capsys):
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    endpoint = f"http://127.0.0.1:{hub.server_port}"
    hub.get_status = 401
    for dry_run in (False, True):
        with pytest.raises(PublishError) as err:
            publish_dataset(built, "org/refused", dry_run=dry_run, endpoint=endpoint, echo=lambda _: None)
        message = str(err.value)
        assert "token was refused (HTTP 401 Unauthorized)" in message and "hf auth login" in message
        assert "cannot reach" not in message and SENTINEL not in message
    # the listing works but the commit is refused: the same message, from the commit
    hub.get_status, hub.post_status = None, 401
    out = run_capturing(caplog, capsys, lambda: publish_dataset(built, "org/refused", endpoint=endpoint))
    assert "publish to org/refused: the token was refused (HTTP 401" in out and SENTINEL not in out


def test_hub_failures_say_what_went_wrong():
    from medinjection.core.hub import hub_failure

    class Answer:
        def __init__(self, status):
            self.status_code = status

    class HttpError(Exception):
        def __init__(self, status):
            super().__init__(f"{status} Client Error for token {SENTINEL}")
            self.response = Answer(status)

    assert "lacks the permission (HTTP 403" in str(hub_failure("list", "org/x", HttpError(403), SENTINEL))
    assert "answered HTTP 500" in str(hub_failure("list", "org/x", HttpError(500), SENTINEL))
    assert "no token was sent" in str(hub_failure("list", "org/x", HttpError(401), None))
    offline = hub_failure("list", "org/x", ConnectionError("Name or service not known"), SENTINEL)
    assert str(offline).startswith("cannot reach the Hub to list org/x")
    assert all(
        SENTINEL not in str(hub_failure("list", "o/x", HttpError(s), SENTINEL)) for s in (401, 403, 500)
    )


def test_redact():
    assert redact(f"401 for token {SENTINEL}", SENTINEL) == "401 for token ***"


# ---- live -----------------------------------------------------------------------------------------


@pytest.mark.live
def test_live_push_is_atomic_and_idempotent(built, require_live):
    """Opt-in: HF_TOKEN and MEDINJECTION_TEST_NAMESPACE set; pushes to a throwaway repo and deletes it."""
    namespace = require_live(
        ["HF_TOKEN", "MEDINJECTION_TEST_NAMESPACE"], "a real push to a throwaway Hub repo"
    )["MEDINJECTION_TEST_NAMESPACE"]
    from huggingface_hub import HfApi

    repo = f"{namespace}/medinjection-test-{uuid.uuid4().hex[:8]}"
    api = HfApi()
    try:
        first = publish_dataset(built, repo, private=True)
        assert first.commit_url and first.plan.add
        remote = {
            f.path
            for f in api.list_repo_tree(repo, repo_type="dataset", recursive=True)
            if hasattr(f, "blob_id")
        }
        assert set(selection(built)) <= remote
        second = publish_dataset(built, repo, private=True)
        assert second.plan.empty and second.commit_url is None
        assert len(api.list_repo_commits(repo, repo_type="dataset")) == 2  # the initial commit + ours
    finally:
        api.delete_repo(repo, repo_type="dataset", missing_ok=True)
