"""The processes of a data-parallel evaluation (``accelerate launch``): each scores a shard of the items.

One process (a plain ``medinjection evaluate``): everything is a no-op. Under ``accelerate launch``
process ``rank`` scores items ``rank, rank + world, ...`` on its own device, the rows are gathered on
every process, and only the main process writes.
"""

from __future__ import annotations

import os


class Processes:
    """The accelerate processes of a run (``WORLD_SIZE`` > 1), or the one process."""

    def __init__(self) -> None:
        self.state = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch
            from accelerate import PartialState

            # Without CUDA, accelerate only joins the processes (gloo) when told to run on CPU.
            self.state = PartialState(cpu=not torch.cuda.is_available())

    @property
    def rank(self) -> int:
        return self.state.process_index if self.state else 0

    @property
    def world(self) -> int:
        return self.state.num_processes if self.state else 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str | None:
        return str(self.state.device) if self.state else None

    def shard(self, n: int) -> list[int]:
        """The indices of ``n`` items this process scores."""
        return list(range(self.rank, n, self.world))

    def gather(self, rows: list) -> list:
        if not self.state:
            return rows
        from accelerate.utils import gather_object

        return gather_object(rows)

    def barrier(self) -> None:
        if self.state:
            self.state.wait_for_everyone()
