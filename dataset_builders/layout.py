"""Where a build writes (every path derives from the output folder), and what a stage is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BUILD_DIR = "_build"


@dataclass(frozen=True)
class Layout:
    """Where a build writes; every path derives from the output folder."""

    root: Path

    @property
    def build(self) -> Path:
        return self.root / BUILD_DIR

    @property
    def rejects(self) -> Path:
        return self.root / "rejects"

    @property
    def prepared(self) -> Path:
        return self.build / "prepared"

    def logs(self, stage: str) -> Path:
        return self.build / "logs" / stage

    def work(self, stage: str) -> Path:
        return self.build / stage


@dataclass
class Stage:
    name: str
    pipeline: list
    tasks: int
