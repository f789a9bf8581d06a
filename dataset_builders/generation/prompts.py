"""Versioned prompt templates for generation: ``medinjection/prompts/<task>/<version>.yaml``.

A template file holds its ``version`` label (recorded in every generated row and in the cache key),
a ``system`` text and a ``user`` text with ``{placeholders}``. Changing any text means a new file.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def load_prompt(task: str, version: str) -> dict[str, Any]:
    folder = resources.files("medinjection") / "prompts" / task
    path = folder / f"{version}.yaml"
    if not path.is_file():
        known = (
            sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
            if folder.is_dir()
            else []
        )
        raise ValueError(f"unknown {task} prompt version {version!r}; known: {known}")
    template = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("version", "system", "user"):
        if key not in template:
            raise ValueError(f"prompt {task}/{version}.yaml has no {key!r}")
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
