"""DistributedDataParallel for the training loop: rank, world size, the wrapper and the collectives.

Every method is a no-op when distribution is disabled, so the loop and its callbacks call them
unconditionally.
"""

from __future__ import annotations

import os
import socket

import torch
from torch import nn

__all__ = ["Distributed"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Distributed:
    """Rank, world size, the DDP wrapper and the collectives the loop needs; a no-op when disabled.

    Parameters
    ----------
    enabled : bool or None
        None: distributed when launched with ``WORLD_SIZE`` > 1 (``torchrun``). True: always (a
        one-process group when no launcher set the environment, which exercises the DDP path).
        False: never.
    device : torch.device
        Under DDP on CUDA each process uses ``cuda:LOCAL_RANK`` instead (:attr:`device`).
    """

    def __init__(self, enabled: bool | None, device: torch.device):
        if enabled is None:
            enabled = int(os.environ.get("WORLD_SIZE", "1")) > 1
        elif not isinstance(enabled, bool):
            raise TypeError(f"distributed must be None, True or False, got {enabled!r}")
        self.enabled = enabled
        self.wrapped: nn.Module | None = None
        self.rank, self.world_size, self.local_rank = 0, 1, 0
        self.owns_group = False
        self.device = device
        if not enabled:
            return
        import torch.distributed as dist

        if not dist.is_available():
            raise RuntimeError("distributed training requested but torch.distributed is not available in this build")
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            # One process per GPU: torchrun's LOCAL_RANK picks it, whatever cuda:N was asked for.
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:
                dist.init_process_group(backend, init_method="env://")
            else:
                dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
            self.owns_group = True
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, network: nn.Module) -> nn.Module:
        """The module to run forward passes through: ``network`` itself, or its DDP wrapper."""
        if not self.enabled:
            return network
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # Kept until close(): destroying the wrapper (its reducer and communication threads) while
        # the ranks still exchange the final record can abort a rank; it goes with the group.
        self.wrapped = DistributedDataParallel(network, device_ids=device_ids, gradient_as_bucket_view=True)
        return self.wrapped

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's BatchNorm statistics everywhere: each rank's copy drifted with its own last batch."""
        if self.enabled:
            import torch.distributed as dist

            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def broadcast_object(self, obj):
        if not self.enabled:
            return obj
        import torch.distributed as dist

        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def finish(self) -> None:
        """At the end of a successful run, on every rank: wait until all ranks are done with the
        wrapper, then drop it (a failed run skips this, so that no rank waits for a dead one)."""
        if self.enabled and self.wrapped is not None:
            import torch.distributed as dist

            dist.barrier()
            self.wrapped = None

    def close(self) -> None:
        self.wrapped = None
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False
