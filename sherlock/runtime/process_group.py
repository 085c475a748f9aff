"""Leave a ``torch.distributed`` run cleanly.

A process that exits with its process group still alive can abort in the C++ destructors
("terminate called without an active exception", SIGABRT) after its work is done and saved, which
turns a finished torchrun job into a failed one. Every rank waits for the others, then the group
is destroyed before the interpreter shuts down.
"""

from __future__ import annotations

import torch.distributed as dist


def close_process_group() -> None:
    """Barrier and destroy the default process group, if this process has one."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
