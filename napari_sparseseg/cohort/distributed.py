"""Data-parallel cohort training under ``torchrun`` (torch.distributed; nothing home-made).

``torchrun --nproc_per_node N -m napari_sparseseg.cli train ...`` starts N processes with RANK /
WORLD_SIZE / MASTER_ADDR in their environment.  Each process makes the pseudo-labels of its share
of the scans (``shard``) and samples its crops from them; DistributedDataParallel averages the
gradients, so one step of N processes sees N batches.  Without those variables every helper here
is a no-op and the trainer runs as a single process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as td

T = TypeVar("T")


def init_from_env() -> bool:
    """Join the process group ``torchrun`` describes (gloo on CPUs, NCCL on GPUs); False if not under torchrun."""
    if td.is_available() and td.is_initialized():
        return True
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    td.init_process_group(backend=backend)
    return True


def active() -> bool:
    return td.is_available() and td.is_initialized() and td.get_world_size() > 1


def rank() -> int:
    return td.get_rank() if active() else 0


def world() -> int:
    return td.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This process's share of ``items`` (every item once across the processes)."""
    return list(items)[rank():: world()] if active() else list(items)


def agree(flag: bool) -> bool:
    """True on every process if it is true on any (stop and done are decided together)."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if td.get_backend() == "nccl":
        t = t.cuda()
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return bool(t.item() > 0)


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` when under torchrun, else the model itself."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def finish() -> None:
    """Wait for every process, then leave the group (a process that exits while a peer still talks
    to it can be aborted by gloo, failing the whole run)."""
    if not active():
        return
    td.barrier()
    td.destroy_process_group()


def sync_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process.

    DistributedDataParallel broadcasts them at the start of each forward pass, so after the last
    step each process still holds the statistics of its own last batch: the replicas would predict
    slightly differently."""
    if not active():
        return
    for buf in model.buffers():
        td.broadcast(buf.data, src=0)


def device_for_rank(requested: str) -> str:
    """Under torchrun on GPUs each process takes the GPU of its LOCAL_RANK."""
    if active() and torch.cuda.is_available() and requested in ("auto", "cuda"):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return requested
