"""The chat format shared by training and evaluation.

A record becomes ``messages`` (system, user, assistant) in the conversational format that TRL's
``SFTTrainer`` consumes; multiple-choice answers are the option letters in the one written form of
``schema.format_letters`` (``"A"``, ``"A, C"``), and ``parse_letters`` reads a model's answer back
strictly: anything that is not a comma-separated list of option letters is ``None`` (wrong).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

import yaml

from medinjection.core.schema import format_letters, options_text

DEFAULT_CHAT_VERSION = "v1"


@cache
def load_chat_template(version: str = DEFAULT_CHAT_VERSION) -> dict[str, Any]:
    path = resources.files("medinjection") / "prompts" / "chat" / f"{version}.yaml"
    if not path.is_file():
        known = sorted(
            p.name.removesuffix(".yaml") for p in path.parent.iterdir() if p.name.endswith(".yaml")
        )
        raise ValueError(f"unknown chat format version {version!r}; known: {known}")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def user_prompt(record: dict[str, Any], version: str = DEFAULT_CHAT_VERSION) -> str:
    template = load_chat_template(version)
    context = (record.get("context") or "").strip()
    context_block = template["context_block"].format(context=context) if context else ""
    return template["user"][record["type"]].format(
        context_block=context_block,
        instruction=record["instruction"].strip(),
        options=options_text(record.get("options") or []),
    )


def target_text(record: dict[str, Any]) -> str:
    if record["type"] == "OEQ":
        return record["answer"].strip()
    return format_letters(record["correct_letters"])


def to_messages(record: dict[str, Any], version: str = DEFAULT_CHAT_VERSION) -> list[dict[str, str]]:
    """The (system, user, assistant) messages of a record."""
    template = load_chat_template(version)
    return [
        {"role": "system", "content": template["system"].strip()},
        {"role": "user", "content": user_prompt(record, version)},
        {"role": "assistant", "content": target_text(record)},
    ]


_LETTER_LIST = re.compile(r"^\s*([A-Z])(\s*[,;]\s*[A-Z])*\s*\.?\s*$")


def parse_letters(text: str, allowed: list[str] | tuple[str, ...]) -> frozenset[str] | None:
    """Strictly parse a model's multiple-choice answer.

    Returns the set of letters, or ``None`` when the text is not a comma-separated list of letters or
    names a letter outside ``allowed`` (the paper's strict parser: any other letter is wrong).
    """
    if not _LETTER_LIST.match(text or ""):
        return None
    letters = frozenset(re.findall(r"[A-Z]", text))
    if not letters <= set(allowed):
        return None
    return letters
