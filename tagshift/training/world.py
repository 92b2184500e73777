"""The processes one training run spans: one, or N launched by `torchrun --nproc_per_node N`
(or `accelerate launch`, which sets the same environment), each a rank of a torch.distributed
group training under DistributedDataParallel.

`--batch-size` stays the global batch: every rank draws the same batches from the same
seeded generator and trains on its share of each (batch_size / N sentences), and DDP
averages the ranks' gradients, each share's loss weighted by its share of the sentences.
For a loss that is a mean over sentences (the CRF head's) an optimiser step is then the
step one process takes over the whole batch; a mean over words or word pieces (the softmax
head, distillation, masked LM) is taken per share, as DDP's users usually have it, and
matches as closely as the shares' word counts do. The learning rate needs no change with
N; raise the batch to use more ranks, and the learning rate with it (docs).

Rank 0 alone writes (log, curves, checkpoints, the bundle), scores dev and prints; the
others learn what it decided (the dev score, an error) through small JSON messages. A failure on rank 0 before training (a locked output, a bad resume) is raised on
every rank with the same message.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, ContextManager, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn

from tagshift.errors import TagshiftError
from tagshift.lineage import machine_record
from tagshift.taggers.tagger import usable_device

# How long a rank waits for the others at a collective before giving up: rank 0 alone
# scores dev and saves, which on a large dev set takes minutes, not hours.
TIMEOUT = timedelta(minutes=60)


class Stopped(TagshiftError):
    """The launcher ended this rank (another rank failed) or a peer left mid-collective."""


@dataclass(frozen=True)
class World:
    """This process's place in the run: `size` ranks in all, this one `rank` (its GPU is
    `local_rank` on its machine). The default is a run of one process."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None
    # collectives of small CPU tensors (scores, flags, messages): the default group under gloo,
    # a gloo side group under nccl (whose collectives take GPU tensors only)
    cpu_group: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def ran_on(self, device: torch.device) -> dict[str, Any]:
        """A lineage step's `ran_on`: the machine, and how many processes trained, over what."""
        return {**machine_record(device), "world_size": self.size,
                **({"distributed_backend": self.backend} if self.distributed else {})}

    def where(self) -> str:
        """'rank 1 of 2: ' before a message, so that each rank's line says whose it is."""
        return f"rank {self.rank} of {self.size}: " if self.distributed else ""

    # --- the data ---------------------------------------------------------------------

    def check_batch(self, batch_size: int) -> None:
        """The global batch must split evenly across the ranks."""
        if batch_size % self.size:
            fits = self.size * max(1, round(batch_size / self.size))
            raise TagshiftError(
                f"--batch-size {batch_size} does not split across {self.size} processes: the batch size is the global "
                f"batch, each process takes an equal share; give a multiple of {self.size} (e.g. --batch-size {fits}) "
                f"or launch {math.gcd(batch_size, self.size)} process(es)"
            )

    def share(self, batch: list[int]) -> tuple[list[int], float]:
        """This rank's part of `batch` (a contiguous slice: sentences of similar length stay
        together) and the weight of its mean loss, its share of the batch times the ranks,
        which makes DDP's average of gradients the whole batch's. A short last batch can
        leave a rank nothing: it then trains on one sentence at weight 0, because every rank
        must take part in each gradient exchange."""
        if not self.distributed:
            return batch, 1.0
        size = math.ceil(len(batch) / self.size)
        mine = batch[self.rank * size : (self.rank + 1) * size]
        if not mine:
            return batch[:1], 0.0
        return mine, len(mine) * self.size / len(batch)

    def seed(self, epoch_seed: int) -> int:
        """torch's seed for an epoch on this rank (dropout, masking): rank 0 draws what one
        process would, the others their own streams."""
        return epoch_seed + 1_000_003 * self.rank

    def loss_of(self, objective: Any) -> Callable[[list[int]], Tensor]:
        """The objective's batch loss, under DDP when distributed: built again whenever an
        epoch has frozen or unfrozen layers (DDP syncs only the parameters that require
        gradients when it is built)."""
        if not self.distributed:
            return objective.loss
        device = next(objective.network.parameters()).device
        return nn.parallel.DistributedDataParallel(
            _BatchLoss(objective), device_ids=[device.index] if device.type == "cuda" else None,
            static_graph=True,  # the same parameters every step of an epoch; some (a pooler) never: DDP learns which
        )

    # --- agreeing ---------------------------------------------------------------------

    def sum(self, value: float) -> float:
        """`value` summed over the ranks."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        self._collective(dist.all_reduce, tensor, group=self.cpu_group)
        return float(tensor)

    def any(self, flag: bool) -> bool:
        """Whether `flag` holds on some rank."""
        return self.sum(float(flag)) > 0

    def from_main(self, value: Callable[[], Any]) -> Any:
        """`value()` computed on rank 0 and sent to every rank as JSON; an error there is
        raised on every rank: one a person can act on (TagshiftError, OSError) with its
        message, any other (a bug, CUDA out of memory, Ctrl-C) named by its type."""
        if not self.distributed:
            return value()
        message: dict[str, Any] = {}
        if self.main:
            try:
                message = {"value": value()}
            except (TagshiftError, OSError) as err:
                self._broadcast_json({"error": str(err)})
                raise
            except BaseException as err:  # the others must not wait for a message that never comes
                self._broadcast_json({"error": f"rank 0 failed ({type(err).__name__}: {err}); see its message"})
                raise
        message = self._broadcast_json(message)
        if "error" in message:
            raise TagshiftError(message["error"])
        return message["value"]

    @contextmanager
    def main_holds(self, hold: Callable[[], ContextManager[Any]]) -> Iterator[None]:
        """`hold()` (an output lock) held by rank 0 alone for the block; its failure is
        raised on every rank."""
        with ExitStack() as stack:
            def take() -> None:
                stack.enter_context(hold())

            self.from_main(take)
            yield

    def _broadcast_json(self, value: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(value).encode("utf-8") if self.main else b""
        length = torch.tensor([len(data)], dtype=torch.long)
        self._collective(dist.broadcast, length, src=0, group=self.cpu_group)
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8) if self.main else torch.empty(int(length), dtype=torch.uint8)
        self._collective(dist.broadcast, buffer, src=0, group=self.cpu_group)
        return json.loads(bytes(buffer.tolist()).decode("utf-8")) if not self.main else value

    def _collective(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            operation(*args, **kwargs)
        except RuntimeError as err:
            if is_peer_loss(err):
                raise peer_lost(self, err) from None
            raise


class _BatchLoss(nn.Module):
    """An objective's batch loss as a module over its network, which DDP wraps: DDP hooks
    the network's parameters, whatever computes the loss from them."""

    def __init__(self, objective: Any):
        super().__init__()
        self.network = objective.network
        self.objective = objective

    def forward(self, batch: list[int]) -> Tensor:
        return self.objective.loss(batch)


def is_peer_loss(err: BaseException) -> bool:
    """Whether torch's error says a peer of a collective is gone (gloo names its transport's
    error in a plain RuntimeError, e.g. from DDP's constructor)."""
    return isinstance(err, dist.DistError) or any(
        sign in str(err) for sign in ("gloo/transport", "Connection reset by peer", "Connection closed by peer"))


def peer_lost(world: World, err: BaseException) -> Stopped:
    # torch's first line, less the source location gloo puts before it ("[.../pair.cc:537] ")
    said = re.sub(r"^\[[^\]]*\] ", "", str(err).splitlines()[0] if str(err) else type(err).__name__).split(". ")[0]
    return Stopped(f"{world.where()}another process of the run stopped ({said[:160]}): see its message; "
                   "the last checkpoint is kept: launch again with --resume")


def start_world(device: str) -> tuple[World, str]:
    """This process's world from the launcher's environment (WORLD_SIZE, RANK, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT, as torchrun and accelerate launch set them) and the device it
    trains on: under several processes, `cuda` means this rank's GPU (cuda:LOCAL_RANK),
    whose group talks over nccl; on CPUs over gloo. Without a launcher: one process."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        raise TagshiftError(f"WORLD_SIZE is {os.environ['WORLD_SIZE']!r}, not a number of processes: launch with "
                            "torchrun (or accelerate launch), which sets it") from None
    if size <= 1:
        return World(), device
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    except (KeyError, ValueError):
        raise TagshiftError(f"WORLD_SIZE is {size} but RANK is {os.environ.get('RANK')!r}: launch with torchrun "
                            "(or accelerate launch), which sets both") from None
    kind = usable_device(device).type
    if kind == "cuda":
        if torch.device(device).index is not None:
            raise TagshiftError(f"--device {device} under {size} processes would put every rank on one GPU: give "
                                "--device cuda, and each rank takes its own (cuda:LOCAL_RANK)")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(usable_device(device))
    elif kind != "cpu":
        raise TagshiftError(f"--device {device}: distributed training runs on CPUs (gloo) or CUDA GPUs (nccl)")
    backend = "nccl" if kind == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    cpu_group = dist.new_group(backend="gloo", timeout=TIMEOUT) if backend == "nccl" else None
    world = World(size, rank, local_rank, backend, cpu_group)
    if threading.current_thread() is threading.main_thread():
        # torchrun ends the other ranks with SIGTERM when one fails: each then says why it stops
        def stop(signum: int, frame: Any) -> None:
            raise Stopped(f"{world.where()}stopped by the launcher (another process of the run failed: see its "
                          "message); the last checkpoint is kept: launch again with --resume")

        signal.signal(signal.SIGTERM, stop)
    return world, device


def end_world(world: World, finished: bool) -> None:
    """Leave the process group (torch warns at exit otherwise). A run that finished waits for
    every rank first: a rank that tears down its gloo connections while a peer still holds
    them open (rank 0 saving) can abort in gloo's destructor."""
    if world.distributed and dist.is_initialized():
        try:
            if finished:
                world._collective(dist.barrier, group=world.cpu_group)
        finally:
            dist.destroy_process_group()


SINGLE = World()
