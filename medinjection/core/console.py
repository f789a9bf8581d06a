"""What the long commands print: one line per stage (with a bar while it runs, on a terminal), a short
summary, and everything else (datatrove's logs, warnings, progress bars of the steps) in a log file.

The build uses it through ``StageReporter``; any other long command (training, evaluation, a report)
can do the same::

    from medinjection.core.console import Console, capture_logs

    console = Console()
    with capture_logs(run_dir / "train.log"):          # library logs go to the file, not the terminal
        with console.stage("train", 1, 3, tasks=steps, done=lambda: trainer.state.global_step) as line:
            trainer.train()
            line.detail = f"loss {trainer.state.log_history[-1]['train_loss']:.3f}"
    console.summary(f"trained {run_dir}", [("adapter", str(run_dir)), ("log", str(run_dir / "train.log"))])

Errors are not captured: an exception leaves ``capture_logs`` and ``stage`` unchanged, and the caller
prints it in full.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn, Protocol

BAR_AFTER_S = 1.0
"""A stage shows a bar only once it has run this long (short stages print their line only)."""


@dataclass
class StageLine:
    """The line of one stage; set ``detail`` before the stage ends to complete it."""

    name: str
    index: int
    total: int
    detail: str = ""
    seconds: float = 0.0

    def text(self, width: int = 22) -> str:
        counter = f"[{self.index:>{len(str(self.total))}}/{self.total}]"
        seconds = f"{self.seconds:6.1f} s"
        return f"{counter} {self.name:<{width}} {seconds}" + (f"  {self.detail}" if self.detail else "")


class StageReporter(Protocol):
    def stage(
        self, name: str, index: int, total: int, tasks: int = 0, done: Callable[[], int] | None = None
    ) -> contextlib.AbstractContextManager[StageLine]: ...

    def note(self, text: str) -> None: ...


class Silent:
    """A reporter that prints nothing (the library default)."""

    @contextlib.contextmanager
    def stage(self, name, index, total, tasks=0, done=None) -> Iterator[StageLine]:
        yield StageLine(name, index, total)

    def note(self, text: str) -> None:
        return None


class Console:
    """Prints to ``stream`` (stdout): a line per stage, notes, a summary. A bar (tqdm, counting
    ``done()`` out of ``tasks``) is drawn only on a terminal and only for stages longer than
    ``BAR_AFTER_S``; in a log or a pipe each stage is exactly one line."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout

    @property
    def interactive(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def echo(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        self.echo(f"note: {text}")

    @contextlib.contextmanager
    def stage(
        self, name: str, index: int, total: int, tasks: int = 0, done: Callable[[], int] | None = None
    ) -> Iterator[StageLine]:
        line = StageLine(name, index, total)
        stop = threading.Event()
        watcher = None
        if self.interactive and tasks and done is not None:
            watcher = threading.Thread(target=self._bar, args=(line, tasks, done, stop), daemon=True)
            watcher.start()
        started = time.perf_counter()
        try:
            yield line
        except BaseException:
            line.detail = "failed"
            raise
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()
            line.seconds = time.perf_counter() - started
            self.echo(line.text())

    def _bar(self, line: StageLine, tasks: int, done: Callable[[], int], stop: threading.Event) -> None:
        from tqdm import tqdm

        if stop.wait(BAR_AFTER_S):
            return
        counter = f"[{line.index}/{line.total}] {line.name}"
        with tqdm(total=tasks, desc=counter, unit=" tasks", file=self.stream, leave=False) as bar:
            while not stop.wait(0.5):
                bar.update(max(0, min(tasks, done()) - bar.n))

    def summary(self, title: str, rows: list[tuple[str, str]]) -> None:
        """``title`` then one indented ``label  value`` line per row."""
        self.echo(title)
        width = max((len(label) for label, _ in rows), default=0)
        for label, value in rows:
            self.echo(f"  {label:<{width}}  {value}")


@contextlib.contextmanager
def capture_logs(path: Path | None) -> Iterator[Path | None]:
    """Send what this process writes to ``sys.stderr`` (loguru's sink, as datatrove installs it,
    ``warnings``, tqdm bars) to ``path`` (appended) while the block runs; ``None`` changes nothing.

    Worker processes have their own stderr: datatrove's local executor is wrapped for them
    (``medinjection.dataset_builders.build.FileLoggingExecutor``).
    """
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = sys.stderr
    with path.open("a", encoding="utf-8", buffering=1) as handle:
        with contextlib.redirect_stderr(handle):
            rebind_loguru()
            handle.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
            try:
                yield path
            finally:
                with contextlib.redirect_stderr(previous):
                    rebind_loguru()


def rebind_loguru() -> None:
    """Loguru's sink keeps the stream it was given: point it at the current ``sys.stderr`` (with
    datatrove's own ``setup_default_logger``, the sink datatrove installs)."""
    from datatrove.utils.logging import setup_default_logger

    setup_default_logger()


# ---- errors of the command line --------------------------------------------------------------------


def error(message: str) -> None:
    """Print ``error: <message>`` to stderr (red on a terminal)."""
    import typer

    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """End a command with one error line and exit status ``code`` (the one way commands fail)."""
    import typer

    error(message)
    raise typer.Exit(code)


@contextlib.contextmanager
def fail_on(*errors: type[BaseException], code: int = 1) -> Iterator[None]:
    """Turn the expected ``errors`` of a command's body into one error line and exit status ``code``;
    anything else stays a traceback."""
    try:
        yield
    except errors as err:
        fail(str(err), code)
