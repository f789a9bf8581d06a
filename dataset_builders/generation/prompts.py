"""Versioned prompt templates for generation: ``medinjection/prompts/<task>/<version>.yaml``.

A template file holds its ``version`` label (recorded in every generated row and in the cache key),
a ``system`` text and a ``user`` text with ``{placeholders}``. Changing any text means a new file.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


@cache
def load_prompt(task: str, version: str) -> dict[str, Any]:
    """The bundled template ``prompts/<task>/<version>.yaml``, or a template file of the user's own
    when ``version`` is a path ending in ``.yaml`` / ``.yml``."""
    folder = resources.files("medinjection") / "prompts" / task
    path = folder / f"{version}.yaml"
    if version.endswith((".yaml", ".yml")):
        path = Path(version).expanduser()
        if not path.is_file():
            raise ValueError(f"{path}: no such {task} prompt file")
    elif not path.is_file():
        known = (
            sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
            if folder.is_dir()
            else []
        )
        raise ValueError(f"unknown {task} prompt version {version!r}; known: {known}")
    shown = path if isinstance(path, Path) else f"{task}/{version}.yaml"
    try:
        template = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"prompt {shown}: not valid YAML ({err})") from None
    if not isinstance(template, dict):
        raise ValueError(f"prompt {shown}: not a mapping of version, system, user")
    for key in ("version", "system", "user"):
        if key not in template:
            raise ValueError(f"prompt {shown} has no {key!r}")
    return template


def render(task: str, version: str, **fields: Any) -> tuple[str, list[dict[str, str]]]:
    """(version label, chat messages) of a template filled with ``fields``."""
    template = load_prompt(task, version)
    user = template["user"]
    if isinstance(user, dict):  # one text per item type
        user = user[fields["type"]]
    extra = {
        k: v.format(**fields) if isinstance(v, str) else v for k, v in (template.get("blocks") or {}).items()
    }
    messages = [
        {"role": "system", "content": template["system"].strip()},
        {"role": "user", "content": user.format(**fields, **extra).strip()},
    ]
    return template["version"], messages
