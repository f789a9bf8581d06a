"""What a run folder says about itself: the base model's Hub id, versions, hardware, code, recipe.

``adapter_config.json`` must name the base model by its Hub id (PEFT writes whatever path the model
was loaded from, a local folder for the tiny model or an offline copy). The id comes from, in order:
``--base_model_id``; the marker of a model made on the fly (``medinjection.tiny``); a Hub cache
snapshot path (``.../models--ORG--NAME/snapshots/SHA``); ``model_name_or_path`` itself when it is not a
local folder. A local folder that says none of this is refused before training starts. The revision
comes from ``model_revision`` (a Hub id), the snapshot path, or ``--base_model_revision`` (a local
copy); when none says it, from the commit transformers read the config at (``config._commit_hash``,
filled in by ``run.train`` once the model is loaded).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from medinjection.tiny import model_marker
from medinjection.training.atomic import write_text_atomic
from medinjection.training.data import sha256_file

PACKAGES = (
    "medinjection",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "huggingface_hub",
    "flash_attn",
    "liger_kernel",
    "deepspeed",
)
_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<sha>[0-9a-f]{40})/?$")


class BaseModelError(ValueError):
    """The base model's Hub id cannot be told; the message says how to give it."""


def base_model(
    model_name_or_path: str,
    revision: str | None,
    declared_id: str | None,
    declared_revision: str | None = None,
) -> dict[str, Any]:
    """``{"hub_id", "revision", "revision_source", "path", "source", "made_on_the_fly"}`` of the base model.

    Args:
        model_name_or_path: what the model is loaded from (a Hub id or a local folder).
        revision: ``model_revision`` (the commit a Hub id is loaded at).
        declared_id: ``--base_model_id``, the Hub id of a local copy.
        declared_revision: ``--base_model_revision``, the Hub commit a local copy was taken at. It may
            not contradict what the path says (a Hub cache snapshot) or what is loaded (``model_revision``).
    """
    path = Path(model_name_or_path).expanduser()
    local = path.is_dir()
    marker = model_marker(path) if local else None
    snapshot = _SNAPSHOT.search(str(path.resolve())) if local else None
    if declared_id:
        hub_id, source = declared_id, "--base_model_id"
    elif marker and marker.get("hub_id"):
        hub_id, source = marker["hub_id"], "marker (made on the fly, not on the Hub)"
    elif snapshot:
        hub_id, source = f"{snapshot['org']}/{snapshot['name']}", "Hub cache snapshot path"
    elif not local:
        hub_id, source = model_name_or_path, "model_name_or_path (a Hub id)"
    else:
        raise BaseModelError(
            f"model_name_or_path {model_name_or_path!r} is a local folder that does not say which Hub model it "
            "is a copy of; pass --base_model_id ORG/NAME (adapter_config.json must name the Hub id)"
        )
    made_on_the_fly = bool(marker and marker.get("made_on_the_fly"))
    if not local:
        known, known_source = revision, "model_revision"
    elif snapshot:
        known, known_source = snapshot["sha"], "Hub cache snapshot path"
    else:
        known, known_source = None, None
    if declared_revision and made_on_the_fly and not declared_id:
        raise BaseModelError(
            f"--base_model_revision {declared_revision!r}: {model_name_or_path} was made on the fly, it has no Hub "
            "revision"
        )
    if declared_revision and known and declared_revision != known:
        raise BaseModelError(
            f"--base_model_revision {declared_revision!r} contradicts the {known_source} {known!r} of "
            f"{model_name_or_path}; give one revision"
        )
    if known:
        rev, rev_source = known, known_source
    elif declared_revision:
        rev, rev_source = declared_revision, "--base_model_revision"
    else:
        rev, rev_source = None, None
    return {
        "hub_id": hub_id,
        "revision": rev,
        "revision_source": rev_source,
        "path": model_name_or_path,
        "source": source,
        "made_on_the_fly": made_on_the_fly,
    }


def rewrite_adapter_config(run_dir: Path, hub_id: str) -> None:
    """Point ``adapter_config.json`` at the base model's Hub id (PEFT wrote the loading path)."""
    path = Path(run_dir) / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    config["base_model_name_or_path"] = hub_id
    write_text_atomic(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def package_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:  # importlib.metadata normalises the name: flash_attn finds flash-attn
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(start: Path | None = None) -> dict[str, Any]:
    """Commit and dirtiness of the checkout holding this package (``None`` values outside a checkout)."""
    folder = Path(start or Path(__file__).resolve().parent)

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=folder, capture_output=True, text=True, timeout=20, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def hardware(world_size: int) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processes": world_size,
    }
    if torch.cuda.is_available():
        info["accelerator"] = "cuda"
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
    else:
        info["accelerator"] = "cpu"
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def recipe(recipe_file: str | None) -> dict[str, Any] | None:
    if not recipe_file:
        return None
    return {"path": str(recipe_file), "sha256": sha256_file(Path(recipe_file))}
