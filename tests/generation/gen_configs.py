"""Configs that point the translate step at a local server, and small MMLU-shaped inputs."""

from __future__ import annotations

from pathlib import Path

import yaml

SAMPLES = Path(__file__).resolve().parents[2] / "dataset_builders" / "samples"


def write_mmlu_csv(folder: Path, n: int, name: str = "anatomy_train.csv") -> Path:
    """``n`` English four-option items in the MMLU CSV layout (no header), answers cycling A..D."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        letter = "ABCD"[i % 4]
        lines.append(
            f"Which structure is described in anatomy item number {i} of this test set?,"
            f"The first structure of item {i},The second structure of item {i},"
            f"The third structure of item {i},The fourth structure of item {i},{letter}"
        )
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def write_config(
    folder: Path,
    url: str | None,
    sources: list[dict],
    cache: bool = True,
    translate: dict | None = None,
    top: dict | None = None,
    **backend,
) -> Path:
    """A build config whose translate step asks ``url`` (``None``: no base_url); ``cache=False`` leaves
    the cache at its default place; ``translate`` and ``top`` add keys to the section and the config."""
    config = {
        "name": "gen-test",
        "sources": [],
        "executor": {"type": "local", "tasks": 1, "workers": 1},
        "translate": {
            "sources": sources,
            "backend": {
                "type": "openai",
                "model": "test-model",
                "base_url": url,
                "concurrency": 4,
                "timeout_s": 1.0,
                "max_retries": 4,
                "backoff_s": 0.01,
                "max_backoff_s": 0.05,
                "prices": {"test-model": {"input": 1.0, "output": 2.0}},
                **backend,
            },
            "cache": str(folder / "cache.sqlite"),
            "batch_size": 8,
            "min_length_ratio": 0.5,
            "max_length_ratio": 2.0,
            **(translate or {}),
        },
        **(top or {}),
    }
    if url is None:
        del config["translate"]["backend"]["base_url"]
    if not cache:
        del config["translate"]["cache"]
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
