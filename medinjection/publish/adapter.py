"""Publish a trained adapter to the Hugging Face Hub, only once it is scored, with its model card.

``medinjection publish adapter RUN_DIR --repo ORG/NAME [--dry-run DIR] [--private]`` and
``medinjection publish adapters RUNS_DIR --namespace ORG`` (every run folder under RUNS_DIR).

* **Scored first.** Refused when ``RUN_DIR/eval/`` holds no evaluation summary, or when a summary was
  made for other adapter files (its ``adapter_sha256`` differs from the files in the folder): the
  message names the ``medinjection evaluate`` command to run.
* **Gate policies.** ``--require-not-worse-than-base METRIC`` (repeatable) refuses when, on any
  task, the paired test against the base model says the adapter is significantly worse on that
  metric (``vs_base`` in the summary, Benjamini-Hochberg corrected), or when no such comparison exists.
* **What goes up, exactly:** the adapter files (``adapter_config.json`` naming the base model's Hub
  id, ``adapter_model.safetensors``), ``README.md`` (the model card), ``manifest.json``,
  ``eval/<task>/summary.json`` and the Hub's ``.eval_results/<task>.yaml`` for tasks
  with a Hub dataset id. Checkpoints, tokenizer copies and logs stay local.
* **One atomic commit.** ``HfApi.create_commit`` with ``parent_commit`` = the head the plan was made
  against: a concurrent push makes the commit fail instead of silently mixing two states. Remote files
  not in the selection are deleted (``.gitattributes`` kept); nothing is committed when nothing changed.
* ``--dry-run DIR`` writes exactly those files into ``DIR`` (replacing what a previous dry run left)
  and lists the plan against the repo when the Hub can be reached.
* The token comes from ``HF_TOKEN`` / ``hf auth login`` (``huggingface_hub.get_token``); it is never
  printed or written, and is masked out of any error that passes through here.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from medinjection.cards.model_card import (
    ModelCardError,
    Scored,
    eval_result_files,
    portable,
    render_model_card,
    scale,
)
from medinjection.core.console import fail as _fail
from medinjection.core.hub import (
    LocalFile,
    Plan,
    PublishError,
    hashes,
    http_status,
    hub_failure,
    plan_commit,
    push_plan,
    remote_listing,
)
from medinjection.core.runs import ADAPTER_FILES, RunError, RunLayout, find_runs

DEFAULT_NAME_TEMPLATE = "{base}-MedInjection-FR-{mix}"


def evaluate_hint(run: RunLayout) -> str:
    base = "BASE_MODEL"
    try:
        base = run.manifest().get("base_model", {}).get("path") or base
    except RunError:
        pass
    return (
        f"medinjection evaluate --config RECIPE --model_name_or_path {base} --adapters {run.root} "
        "--output_dir eval/ (a full evaluation writes RUN_DIR/eval/<task>/summary.json for these adapter files)"
    )


def scored_summaries(run: RunLayout) -> list[Scored]:
    """The run's evaluation summaries, each checked to have scored exactly the adapter files in the folder."""
    run.require_adapter()
    summaries = run.summaries()
    if not summaries:
        raise PublishError(
            f"refusing to publish {run.root}: no evaluation summary in {run.eval_dir}; score it first:\n  "
            + evaluate_hint(run)
        )
    current = run.adapter_sha256()
    stale = {
        name: s.get("adapter_sha256") for name, s in summaries.items() if s.get("adapter_sha256") != current
    }
    if stale:
        lines = [
            f"{name}: scored adapter files {sha or 'none (no hash recorded)'}" for name, sha in stale.items()
        ]
        raise PublishError(
            f"refusing to publish {run.root}: evaluation summaries for other adapter files "
            f"(the folder's files hash to {current}):\n  "
            + "\n  ".join(lines)
            + "\nscore these files again:\n  "
            + evaluate_hint(run)
        )
    check_adapter_is_the_trained_one(run, current)
    base = ((run.manifest() if run.manifest_path.is_file() else {}).get("base_model")) or {}
    other = {
        name: f"{s.get('model_hub_id')}@{s.get('model_revision')}"
        for name, s in summaries.items()
        if not same_base(base, s)
    }
    if other:
        lines = [f"{name}: scored on {model}" for name, model in other.items()]
        raise PublishError(
            f"refusing to publish {run.root}: scores made on another base model than the adapter's "
            f"({base.get('hub_id')}@{base.get('revision')}):\n  "
            + "\n  ".join(lines)
            + "\nscore it on its base:\n  "
            + evaluate_hint(run)
        )
    partial = [name for name, s in summaries.items() if s.get("subsample")]
    if partial:
        raise PublishError(
            f"refusing to publish {run.root}: {', '.join(partial)} scored on a subset of the task "
            "(limit, a smoke run); score the whole task:\n  " + evaluate_hint(run)
        )
    return [Scored(name, summary, run.summary_path(name)) for name, summary in summaries.items()]


def check_adapter_is_the_trained_one(run: RunLayout, current: str) -> None:
    """The adapter files must be the ones the manifest describes (``adapter.sha256``): a run trained over
    again by another tool, or another adapter copied in, leaves a manifest (mix, data, losses) that the
    card would then print beside weights it does not describe."""
    manifest = run.manifest()
    recorded = (manifest.get("adapter") or {}).get("sha256")
    if recorded != current:
        raise PublishError(
            f"refusing to publish {run.root}: its adapter files are not the ones its manifest.json describes "
            f"(the manifest records adapter sha256 {recorded or 'none'}, the files hash to {current}); the card "
            "would describe other weights. Train the adapter again with `medinjection train` (which writes "
            "the manifest), or put back the adapter files that were trained"
        )


def _sha(value: str | None) -> bool:
    return bool(value) and len(value) == 40 and all(c in "0123456789abcdef" for c in value.lower())


def same_base(base: dict, summary: dict) -> bool:
    """Whether a summary scored the adapter on its own base model (Hub id, and commit when both say one).

    A summary whose base model could not be told (a local copy without marker) is not refused here; the
    card's figures then rest on the evaluator's word, as before this check.
    """
    scored = summary.get("model_hub_id")
    if scored is None or base.get("hub_id") is None:
        return True
    if scored != base["hub_id"]:
        return False
    ours, theirs = base.get("revision"), summary.get("model_revision")
    return not (_sha(ours) and _sha(theirs) and ours.lower() != theirs.lower())


def check_gates(run: RunLayout, scored: list[Scored], not_worse_than_base: list[str]) -> None:
    """Refuse when a paired test says the adapter is significantly worse than the base on a gated metric.

    Every task where the metric was scored must carry the comparison: one without it would pass the
    gate unchecked. A task where the metric does not apply (Hamming without multi-answer items) is not
    gated on it; a metric scored nowhere is an error.
    """
    problems = []
    for metric in not_worse_than_base:
        applies = [
            s for s in scored if ((s.summary.get("metrics") or {}).get(metric) or {}).get("value") is not None
        ]
        if not applies:
            problems.append(f"{metric}: not scored on any task of this adapter")
            continue
        missing = [s.task for s in applies if not (s.summary.get("vs_base") or {}).get(metric)]
        if missing:
            problems.append(
                f"{metric}: no paired comparison with the base model on {', '.join(missing)}; score the base "
                "model on the same tasks into the same output_dir (medinjection evaluate ... --base true)"
            )
        for item in scored:
            comparison = (item.summary.get("vs_base") or {}).get(metric)
            if comparison and comparison.get("verdict") == "worse" and comparison.get("significant"):
                factor = scale(metric)
                problems.append(
                    f"{metric} on {item.task}: significantly worse than the base model "
                    f"(diff {factor * comparison['diff']:+.2f} points, 95% CI "
                    f"[{factor * comparison['ci95'][0]:+.2f}, {factor * comparison['ci95'][1]:+.2f}], "
                    f"{comparison.get('test')}, p_adjusted {comparison.get('p_adjusted'):.3g})"
                )
    if problems:
        raise PublishError(f"refusing to publish {run.root} (gate policy):\n  " + "\n  ".join(problems))


@dataclass
class AdapterRelease:
    """What one adapter repo will hold: path in repo -> bytes, plus the plan against the remote."""

    run: RunLayout
    repo: str
    files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def prepare_release(
    run_dir: str | Path,
    repo: str,
    *,
    license: str | None = None,
    dataset_repo: str | None = None,
    not_worse_than_base: list[str] = (),
    live: bool = False,
) -> AdapterRelease:
    """Check the run folder and make every file of the release (nothing is written or sent)."""
    run = RunLayout(Path(run_dir))
    try:
        scored = scored_summaries(run)
        check_gates(run, scored, list(not_worse_than_base))
        manifest = run.manifest()
        card = render_model_card(run, scored, repo_id=repo, license=license, dataset_repo=dataset_repo)
    except (RunError, ModelCardError) as err:
        raise PublishError(f"refusing to publish {run.root}: {err}") from None
    base = manifest.get("base_model") or {}
    if live and base.get("made_on_the_fly"):
        raise PublishError(
            f"refusing to publish {run.root}: its base model {base.get('hub_id')} was made on the fly (random "
            "weights, not on the Hub); use --dry-run DIR to preview the release"
        )
    release = AdapterRelease(run, repo)
    for name in ADAPTER_FILES:
        release.files[name] = (run.root / name).read_bytes()
    release.files["README.md"] = str(card).encode("utf-8")
    release.files["manifest.json"] = _json_bytes(portable(manifest))
    for item in scored:
        release.files[f"eval/{item.task}/summary.json"] = _json_bytes(portable(item.summary))
    eval_files = eval_result_files(scored)
    release.files |= {path: text.encode("utf-8") for path, text in eval_files.items()}
    without_hub_id = sorted({s.task for s in scored} - {Path(p).stem for p in eval_files})
    if without_hub_id:
        release.notes.append(
            "no .eval_results file for "
            + ", ".join(without_hub_id)
            + " (no Hub dataset id; figures in model-index)"
        )
    if (manifest.get("dataset") or {}).get("kind") != "hub" and not dataset_repo:
        release.notes.append(
            "trained on a local dataset folder: the card names no Hub dataset (pass --dataset-repo ORG/NAME[@REV] "
            "once the dataset is published)"
        )
    return release


def _json_bytes(value) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


PREVIEW_MARKER = ".medinjection-adapter-preview.json"
"""Written into every ``--dry-run`` folder; only a folder that carries it is ever replaced."""


def _local_files(folder: Path) -> dict[str, LocalFile]:
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != PREVIEW_MARKER):
        rel = path.relative_to(folder).as_posix()
        sha256, sha1 = hashes(path)
        out[rel] = LocalFile(rel, path, path.stat().st_size, sha256, sha1)
    return out


def check_preview_folder(folder: Path, run_root: Path) -> None:
    """Refuse a ``--dry-run`` folder whose files a preview would destroy: the run folder itself, a folder
    holding it or inside it, or any non-empty folder that no earlier preview wrote (no marker)."""
    target, run = Path(folder).resolve(), Path(run_root).resolve()
    if target == run or run.is_relative_to(target) or target.is_relative_to(run):
        raise PublishError(
            f"{folder}: the run folder {run_root}, a folder holding it, or a folder inside it; a preview "
            "replaces its folder, so give it a folder of its own (e.g. publish-preview/<mix>)"
        )
    if target.exists() and not target.is_dir():
        raise PublishError(f"{folder}: exists and is not a folder; choose another --dry-run folder")
    if target.is_dir() and any(target.iterdir()) and not (target / PREVIEW_MARKER).is_file():
        raise PublishError(
            f"{folder}: exists, is not empty and was not written by a publish preview (no {PREVIEW_MARKER}); "
            "nothing was changed there: choose an empty or new folder"
        )


def write_files(files: dict[str, bytes], folder: Path, marker: dict | None = None) -> None:
    """Write exactly ``files`` into ``folder``; with ``marker`` (a dry run), a previous preview there is
    replaced (never anything else: ``check_preview_folder`` first) and the marker written beside them."""
    if marker is not None and folder.exists():
        shutil.rmtree(folder)
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if marker is not None:
        (folder / PREVIEW_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


@dataclass
class AdapterPublishResult:
    repo: str
    plan: Plan | None
    listed: str
    files: list[str]
    commit_url: str | None = None
    dry_run_dir: Path | None = None


def publish_release(
    release: AdapterRelease,
    *,
    dry_run_dir: Path | None = None,
    private: bool = False,
    endpoint: str | None = None,
    compare_remote: bool = True,
    echo: Callable[[str], None] = print,
) -> AdapterPublishResult:
    """Write ``release`` to ``dry_run_dir``, or push it in one commit.

    ``compare_remote=False`` (dry runs only) lists the plan against an empty repo without asking the
    Hub (the offline demo).
    """
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if dry_run_dir is None and not token:
        raise PublishError("no Hugging Face token found: set HF_TOKEN or run `hf auth login`")
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(dry_run_dir) if dry_run_dir is not None else Path(tmp) / "release"
        marker = None
        if dry_run_dir is not None:
            check_preview_folder(staging, release.run.root)
            marker = {
                "written_by": "medinjection publish adapter --dry-run",
                "run": release.run.name,
                "repo": release.repo,
            }
        write_files(release.files, staging, marker)
        local = _local_files(staging)
        api = HfApi(endpoint=endpoint, token=token)
        if not compare_remote and dry_run_dir is None:
            raise PublishError("a push must compare with the repo (compare_remote=False is for dry runs)")
        parent, remote, listed = (
            None,
            None,
            f"{release.repo} (the Hub was not asked; listed against an empty repo)",
        )
        if compare_remote:
            parent, remote, listed = _remote_state(api, release.repo, token, dry_run=dry_run_dir is not None)
        plan = plan_commit(local, remote)
        prefix = "dry run: " if dry_run_dir is not None else ""
        echo(f"{prefix}{release.run.root} -> {release.repo}: {len(local)} files vs {listed}")
        for line in plan.lines():
            echo(f"  {line}")
        for note in release.notes:
            echo(f"  note: {note}")
        result = AdapterPublishResult(release.repo, plan, listed, sorted(local), dry_run_dir=dry_run_dir)
        if dry_run_dir is not None:
            echo(f"  wrote the release into {dry_run_dir}")
            return result
        if plan.empty:
            echo("  nothing changed: no commit")
            return result
        result.commit_url = push_plan(
            api,
            release.repo,
            plan,
            local,
            repo_type="model",
            title=f"Publish the scored adapter {release.run.name}",
            create=remote is None,
            private=private,
            token=token,
            parent_commit=parent,
        )
        echo(f"  committed {result.commit_url}")
        return result


def _remote_state(api, repo: str, token: str | None, dry_run: bool) -> tuple[str | None, dict | None, str]:
    """(head commit, files at that head, a note): the head first, then the files at that head, so that
    the commit can name it as its parent and a push landing in between makes ours fail instead of
    silently mixing the two. Unreachable Hub: an error for a push, an empty repo for a dry run."""
    try:
        parent = head_commit(api, repo)
        if parent is None:
            return None, None, f"{repo} does not exist yet"
        remote, listed = remote_listing(api, repo, parent, repo_type="model")
        return parent, remote, listed
    except Exception as err:  # offline, DNS, a refused token (core.hub.hub_failure says which)
        failure = hub_failure("list", repo, err, token)
        if not dry_run or http_status(err) is not None:
            raise failure from None
        return None, None, f"{repo}: remote unreachable ({failure}); listed against an empty repo"


def head_commit(api, repo: str) -> str | None:
    """The sha of the model repo's main branch (``None`` when the repo does not exist)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return api.repo_info(repo, repo_type="model").sha
    except RepositoryNotFoundError:
        return None


def repo_name(run: RunLayout, namespace: str, template: str) -> str:
    manifest = run.manifest()
    base = ((manifest.get("base_model") or {}).get("hub_id") or "model").split("/")[-1]
    mix = (manifest.get("mix") or {}).get("name") or run.name
    return f"{namespace}/{template.format(base=base, mix=mix.replace('_', '-'), run=run.name)}"


# ---- command line ---------------------------------------------------------------------------------


LicenseOption = Annotated[
    str | None,
    typer.Option(
        "--license",
        help="Licence id of the adapter (default: the base model's, apache-2.0 for Qwen3-4B-Instruct-2507).",
    ),
]
DatasetRepoOption = Annotated[
    str | None,
    typer.Option(
        "--dataset-repo",
        help="ORG/NAME[@REV] of the published dataset, for an adapter trained on a local folder.",
    ),
]
GateOption = Annotated[
    list[str] | None,
    typer.Option(
        "--require-not-worse-than-base",
        help="Refuse when the paired test says the adapter is significantly worse than the base on METRIC.",
        metavar="METRIC",
    ),
]
PrivateOption = Annotated[
    bool, typer.Option("--private", help="Create the repo private (applies when it is created).")
]


def publish_adapter_command(
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder (medinjection train), scored (medinjection evaluate).")
    ],
    repo: Annotated[str, typer.Option("--repo", help="The model repo, ORG/NAME.")],
    dry_run: Annotated[
        Path | None,
        typer.Option("--dry-run", help="Write exactly the files of the release into DIR; push nothing."),
    ] = None,
    private: PrivateOption = False,
    license: LicenseOption = None,
    dataset_repo: DatasetRepoOption = None,
    require_not_worse_than_base: GateOption = None,
) -> None:
    """Publish one scored adapter with its model card in one atomic commit."""
    try:
        release = prepare_release(
            run_dir,
            repo,
            license=license,
            dataset_repo=dataset_repo,
            not_worse_than_base=require_not_worse_than_base or [],
            live=dry_run is None,
        )
        publish_release(release, dry_run_dir=dry_run, private=private, echo=typer.echo)
    except PublishError as err:
        _fail(str(err))


def publish_adapters_command(
    runs_dir: Annotated[Path, typer.Argument(help="A folder of run folders (runs/<mix>/).")],
    namespace: Annotated[str, typer.Option("--namespace", help="The Hub user or organisation.")],
    name_template: Annotated[
        str, typer.Option("--name-template", help="Repo name from {base}, {mix}, {run}.")
    ] = DEFAULT_NAME_TEMPLATE,
    dry_run: Annotated[
        Path | None, typer.Option("--dry-run", help="Write each release into DIR/<run>/; push nothing.")
    ] = None,
    private: PrivateOption = False,
    license: LicenseOption = None,
    dataset_repo: DatasetRepoOption = None,
    require_not_worse_than_base: GateOption = None,
) -> None:
    """Publish every scored adapter under RUNS_DIR; all are checked before the first is pushed."""
    try:
        runs = find_runs(runs_dir)
        releases = [
            prepare_release(
                run.root,
                repo_name(run, namespace, name_template),
                license=license,
                dataset_repo=dataset_repo,
                not_worse_than_base=require_not_worse_than_base or [],
                live=dry_run is None,
            )
            for run in runs
        ]
        if dry_run is not None:  # every preview folder checked before any is written
            for release in releases:
                check_preview_folder(dry_run / release.run.name, release.run.root)
        for release in releases:
            publish_release(
                release,
                dry_run_dir=dry_run / release.run.name if dry_run is not None else None,
                private=private,
                echo=typer.echo,
            )
    except (PublishError, RunError) as err:
        _fail(str(err))
    typer.echo(f"{'previewed' if dry_run else 'published'} {len(releases)} adapters")
