"""The training core: device, precision, seeding, the epoch/step loop, progress, checkpoints, DDP.

One loop (:func:`run_epochs`) trains every network of the package: the detectors' fine-tuning
(:func:`train`, which feeds it normal and outlier-exposure batches) and theta0 pretraining
(:mod:`skad_transfer.pretrain`, which feeds it labelled batches). The caller builds the network,
optimizer and per-step learning-rate schedule and yields one :class:`Step` (a loss and how many
images it covers) per optimizer step; the loop does the rest: backward and update, the epoch's
history, the divergence checks, the progress bar, checkpoints and resuming, DistributedDataParallel,
and end-of-epoch hooks (evaluation, early stopping).

Design choices, each measured (``benchmarks/engine_speed.py``):

* Data are canonical NCHW tensors; the normal set is moved to the training device once (when it
  fits) and outlier-exposure batches are gathered by index from memory or a memory map. There is no
  DataLoader and no per-image PIL work: crop + flip + normalisation run batch-wise on the device.
* On CUDA the forward/backward runs under bf16 autocast, and so it does on CPUs with native bf16
  (AVX512-BF16/AMX), where it is several times faster than float32. Tensors and weights are
  channels_last on every device: oneDNN's channels_last kernels made float32 training 1.2-1.3x
  faster on an AVX-512 CPU and 1.1x under AVX2.
* Every epoch's randomness (the permutation, the OE draw, the augmentations) is a function of
  ``(seed, epoch)`` only, drawn from generators of its own (:func:`seeded_generator`, never torch's
  global one), so a run resumed from its checkpoint is identical to an uninterrupted one, and two
  CPU runs with one seed give identical weights, also when they run at the same time in two
  threads. Training changes no process-wide setting (threads, flush-denormal, default dtype); the
  one backend flag a caller may ask for (``cudnn_benchmark``) is restored when the loop ends.
* A fit never ends with a broken model: a non-finite loss stops it at once, and so do parameters or
  BatchNorm statistics that became non-finite (checked after the last step and before every
  checkpoint save), with a :class:`TrainingDivergedError` that names ``lr``.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ._io import atomic_write
from .data.augment import normalize, random_crop_flip
from .data.corpora import OutlierCorpus
from .data.harmonize import jpeg_roundtrip, like_source, match_luminance, reference_indices
from .data.images import resize_images
from .data.sampling import permutation_prefix

__all__ = ["run_epochs", "Step", "Checkpointing", "Progress", "Distributed", "seeded_generator", "fingerprint",
           "placed", "train", "TrainSettings", "TrainingData", "apply_batched", "Precision", "resolve_device",
           "check_checkpoint_path", "checkpoint_seed", "TrainingDivergedError", "CHECKPOINT_EVERY",
           "CHECKPOINT_FORMAT", "PRECISIONS", "COMPILE_MODES", "compiled"]

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]
"""``objective(network, normal_batch, outlier_batch_or_None) -> scalar loss`` on normalised batches."""


CHECKPOINT_EVERY = 50
"""Fewest optimizer steps between two checkpoint saves (epochs shorter than this are grouped)."""

CHECKPOINT_FORMAT = "skad_transfer.checkpoint/1"
"""The ``format`` entry of every training checkpoint the package writes (fine-tuning and pretraining)."""


class TrainingDivergedError(FloatingPointError):
    """The loss, the weights or the scores became NaN or infinite; training stopped instead of
    producing a broken model."""


def resolve_device(device) -> torch.device:
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device."""
    if isinstance(device, torch.device):
        spec = str(device)
    elif isinstance(device, str):
        spec = device.strip().lower()
    else:
        raise TypeError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got {type(device).__name__}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif resolved.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return resolved


PRECISIONS = ("auto", "float32", "bfloat16")

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes a detector's ``compile=`` accepts besides True (``"default"``) and False."""

CUDA_GRAPH_MODES = frozenset({"reduce-overhead", "max-autotune"})
"""The modes among :data:`COMPILE_MODES` in which ``torch.compile`` replays CUDA graphs on a GPU."""


def compiled(function: Callable, compile: bool | str, device: torch.device | str | None = None) -> Callable:
    """``function`` itself (``compile=False``) or under ``torch.compile`` in the mode ``compile``
    names (True: ``"default"``).

    ``"reduce-overhead"`` and ``"max-autotune"`` also replay the compiled forward and backward as
    CUDA graphs on a GPU, which removes the per-kernel launch cost that bounds a step of small images
    there (``docs/benchmarks.md``, "The device suite"); on the CPU they compile as ``"default"``
    does. Each call of the returned function is then marked as a new training step, so that CUDA
    graphs may reuse the memory of the previous step's outputs, which the engine has consumed by
    then.

    On a CPU ``device`` a missing C++ compiler (which inductor needs there) is a RuntimeError at
    once, and a failure of torch.compile itself in a call is re-raised as a RuntimeError that names
    ``compile=False`` as the way out.
    """
    if compile is False:
        return function
    mode = "default" if compile is True else compile
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be True, False or one of {COMPILE_MODES}, got {compile!r}")
    if device is not None and torch.device(device).type == "cpu":
        _check_cpu_compiler(compile)
    step = torch.compile(function, mode=mode)
    graphs = mode in CUDA_GRAPH_MODES

    def compiled_step(*args, **kwargs):
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        try:
            return step(*args, **kwargs)
        except Exception as error:  # torch.compile's own failures say nothing of compile=False
            if not type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise RuntimeError(f"compile={compile!r}: torch.compile could not build the training step "
                               f"({type(error).__name__}: {first}); fit with compile=False") from error

    return compiled_step


def _check_cpu_compiler(compile) -> None:
    """On the CPU, torch.compile's inductor needs a working C++ compiler: without one the first step
    fails after seconds of tracing, deep inside torch. Ask inductor now."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # another torch layout: the wrapper above still explains a failure
        return
    try:
        get_cpp_compiler()
    except Exception as error:
        raise RuntimeError(
            f"compile={compile!r}: torch.compile on the CPU needs a working C++ compiler (g++ or clang, or $CXX), "
            f"and none was found ({error}); install one, or fit with compile=False"
        ) from error


ONEDNN_ISAS_WITHOUT_BFLOAT16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                          "AVX512_CORE_VNNI"})
"""Values of oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA``, formerly ``DNNL_MAX_CPU_ISA``) below its bf16 kernels."""


def cpu_has_native_bfloat16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX) and oneDNN, which runs the
    convolutions, may use it: its ISA cap (``ONEDNN_MAX_CPU_ISA``) is not below bf16. Under such a
    cap bf16 is emulated: training ran 11x slower than in float32 with ``ONEDNN_MAX_CPU_ISA=AVX2``
    on an AVX512-BF16 CPU (``ATEN_CPU_CAPABILITY=avx2`` alone left bf16 1.7x faster than float32;
    ``docs/benchmarks.md``)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if not any(getattr(torch.cpu, name, lambda: False)() for name in checks):
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    return cap not in ONEDNN_ISAS_WITHOUT_BFLOAT16


def on_device(values, device: torch.device) -> torch.Tensor:
    """``values`` (per-channel statistics: a sequence or a tensor) as a float32 tensor on ``device``,
    made once per fit or scoring pass: built from Python numbers inside a step, it would be a
    blocking host-to-device copy on a GPU, which keeps the host from queueing the next kernels
    while the GPU works."""
    return torch.as_tensor(values, dtype=torch.float32, device=device)


@dataclass(frozen=True)
class Precision:
    """How the network runs on a device: autocast dtype (or None) and memory format."""

    autocast_dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def resolve(cls, device: torch.device, precision: str = "auto") -> "Precision":
        """``"auto"``: bf16 autocast on CUDA and on CPUs with native bf16 (6-7x faster than float32
        there, ``benchmarks/engine_speed.py``); float32 elsewhere. channels_last on every device
        (float32 training 1.2-1.3x faster on an AVX-512 CPU, 1.1x under AVX2; ``docs/benchmarks.md``)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "auto":
            native = device.type == "cuda" or cpu_has_native_bfloat16()
            precision = "bfloat16" if native else "float32"
        dtype = torch.bfloat16 if precision == "bfloat16" else None
        return cls(dtype, channels_last=True)

    @property
    def name(self) -> str:
        """``"bfloat16"`` or ``"float32"``: what ``"auto"`` resolved to."""
        return "bfloat16" if self.autocast_dtype == torch.bfloat16 else "float32"

    def autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


@contextmanager
def placed(network: nn.Module, device: torch.device, precision: Precision) -> Iterator[nn.Module]:
    """``network`` on ``device`` (channels_last where ``precision`` says) for the block; the default
    memory format again after it. Build the optimizer inside the block."""
    network.to(device)
    if precision.channels_last:
        network.to(memory_format=torch.channels_last)
    try:
        yield network
    finally:
        if precision.channels_last:
            network.to(memory_format=torch.contiguous_format)


def seeded_generator(*key, device: torch.device = torch.device("cpu")) -> torch.Generator:
    """A generator on ``device`` that depends only on ``key`` (e.g. ``(seed, epoch)``).

    Every random draw of a training epoch comes from such a generator, so an epoch replayed after a
    resume draws exactly what it drew the first time, and no draw touches torch's global generator.
    """
    generator = torch.Generator(device=device)
    digest = hashlib.sha256("/".join(str(part) for part in key).encode()).hexdigest()
    generator.manual_seed(int(digest[:15], 16))
    return generator


def fingerprint(*parts) -> str:
    """A sha256 over ``parts`` (strings, bytes, numpy arrays, tensors): what identifies a training
    run for its checkpoint, so that a checkpoint is only ever resumed by the run that wrote it."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            digest.update(repr((part.shape, str(part.dtype))).encode())
            part = np.ascontiguousarray(part).tobytes()
        digest.update(part if isinstance(part, bytes) else str(part).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------
# DistributedDataParallel
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------


def check_checkpoint_path(checkpoint) -> Path:
    """``checkpoint`` as a :class:`~pathlib.Path`, once it is known that a file can be saved there.

    Called before training, so that a bad path fails at once instead of after the first epoch. A
    missing folder is created (as saving would). Raises ``ValueError`` when the path is a folder and
    ``OSError`` when its folder cannot be created or written to; both messages name ``checkpoint``.
    """
    path = Path(checkpoint)
    if path.is_dir():
        raise ValueError(f"checkpoint: {str(path)!r} is a folder; give a file path, e.g. {str(path / 'fit.ckpt')!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Permission bits do not tell (root, read-only mounts, ACLs): create a file where saving will.
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        # strerror, not str(error): the latter names the probe file, which the caller never saw.
        raise type(error)(f"checkpoint: cannot save to {str(path)!r}: its folder cannot be created or written "
                          f"({error.strerror or error})") from error
    return path


@dataclass(frozen=True)
class Checkpointing:
    """Where and how :func:`run_epochs` saves and resumes.

    Parameters
    ----------
    path : path-like
        The checkpoint file, rewritten atomically (network, optimizer, scheduler, epoch, history).
    fingerprint : str
        What identifies the run (:func:`fingerprint` of its settings and data); a checkpoint with
        another fingerprint or ``seed`` is refused, never continued.
    seed : int
        The run's seed, recorded so that a run with a drawn seed resumes with the same one
        (:func:`checkpoint_seed`).
    resume : bool, default=True
        False ignores (and overwrites) an existing checkpoint.
    every : int, optional
        Fewest optimizer steps between two saves (default :data:`CHECKPOINT_EVERY`); the last epoch
        is always saved. 1 saves after every epoch.
    extra : dict
        Saved with the state for the reader (e.g. the settings); not used to resume.
    """

    path: str | os.PathLike
    fingerprint: str
    seed: int
    resume: bool = True
    every: int | None = None
    extra: dict = field(default_factory=dict)


def _read_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise OSError(f"checkpoint: could not read {path}: {type(error).__name__}: {error}; "
                      f"delete it to start afresh") from error
    # Fine-tuning checkpoints written before the format entry existed have the same keys.
    if not isinstance(state, dict) or state.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint: {path} is not a training checkpoint of this package's version; delete it "
                         f"or choose another checkpoint path")
    return state


def checkpoint_seed(checkpoint, fingerprint: str) -> int | None:
    """The seed recorded in the ``checkpoint`` file of the run ``fingerprint``; None when there is no
    such file, or it belongs to another run (which :func:`run_epochs` then refuses), or predates seeds.

    A fit whose seed is drawn afresh each time (``random_state=None``) resumes with this seed.
    """
    path = Path(checkpoint)
    if not path.is_file():
        return None
    state = _read_checkpoint(path)
    if state.get("fingerprint") != fingerprint or state.get("seed") is None:
        return None
    return int(state["seed"])


def _save(spec: Checkpointing, epoch: int, network, optimizer, scheduler, history) -> None:
    path = Path(spec.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {**spec.extra, "format": CHECKPOINT_FORMAT, "fingerprint": spec.fingerprint, "seed": int(spec.seed),
             "epoch": epoch, "network": network.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "history": history}
    atomic_write(path, lambda handle: torch.save(state, handle))


def _resume(spec: Checkpointing, network, optimizer, scheduler) -> tuple[int, list[dict]]:
    path = Path(spec.path)
    state = _read_checkpoint(path)
    # A checkpoint from before seeds were recorded carries none; its fingerprint covers the seed.
    if state.get("fingerprint") != spec.fingerprint or state.get("seed", spec.seed) != spec.seed:
        raise ValueError(
            f"checkpoint: {path} belongs to a different fit (other data, parameters or seed); delete it or choose "
            f"another checkpoint path"
        )
    network.load_state_dict(state["network"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["epoch"]), [dict(entry) for entry in state["history"]]


# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------


@dataclass
class Step:
    """One optimizer step's forward pass, as the caller of :func:`run_epochs` yields it.

    ``loss`` (a scalar with its graph) is minimised; it averages over ``images`` images, which
    weight it in the epoch's mean. ``sums`` are detached per-step sums of statistics over those
    images (e.g. correct predictions); the history reports each as its mean per image.
    """

    loss: torch.Tensor
    images: int
    sums: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """The progress bar: shown when ``verbose``, and only once a run has lasted ``delay`` seconds."""

    verbose: bool = False
    description: str = "fit"
    delay: float = 5.0


def _diverged(value: float, epoch: int, step: int, lr: float, advice: str) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"the training loss became {value} at epoch {epoch + 1}, step {step + 1} (lr={lr:g}); {advice}"
    )


def _check_finite_state(network: nn.Module, epoch: int, lr: float) -> None:
    tensors = [(name, t) for name, t in [*network.named_parameters(), *network.named_buffers()]
               if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])  # one device sync, not one per tensor
    if not bool(finite.all()):
        name = tensors[int((~finite).nonzero()[0, 0])][0]
        raise TrainingDivergedError(
            f"training diverged: {name} of the network became non-finite (nan or inf) by the end of epoch "
            f"{epoch + 1} (lr={lr:g}); lower lr (e.g. 10x), or check the inputs"
        )


@contextmanager
def _cudnn_benchmark(enabled: bool) -> Iterator[None]:
    previous = torch.backends.cudnn.benchmark
    if enabled:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def run_epochs(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch_steps: Callable[[nn.Module, int], Iterable[Step]],
    *,
    epochs: int,
    steps_per_epoch: int,
    total_steps: int | None = None,
    device: torch.device,
    checkpointing: Checkpointing | None = None,
    distributed: Distributed | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    after_epoch: Callable[[dict], Any] | None = None,
    progress: Progress = Progress(),
    advice: str = "lower lr, or check the inputs",
    cudnn_benchmark: bool = False,
) -> list[dict]:
    """Train ``network`` in place for ``epochs`` epochs; returns the history, one dict per epoch.

    Parameters
    ----------
    network : nn.Module
        Already on ``device`` (:func:`placed`); ``optimizer`` holds its trained parameters and
        ``scheduler`` is stepped once per optimizer step.
    epoch_steps : callable
        ``epoch_steps(model, epoch)`` yields one :class:`Step` per optimizer step of that epoch,
        computed with ``model`` (``network`` or its DDP wrapper). Its randomness must depend only on
        ``epoch`` (:func:`seeded_generator`) for resumed runs to equal uninterrupted ones.
    epochs, steps_per_epoch : int
        The number of epochs, and the steps of a full one (to place a resumed run's progress bar).
    total_steps : int, optional
        All steps of the run (a step budget may cut the last epoch); ``epochs * steps_per_epoch``
        by default.
    checkpointing : Checkpointing, optional
        Save and resume (the path is checked before the first step).
    distributed : Distributed, optional
        DDP: the model is wrapped, the epoch's sums are all-reduced, rank 0's BatchNorm statistics
        are broadcast after every epoch, and only rank 0 saves and shows progress.
    evaluate : callable, optional
        ``evaluate(network) -> dict`` after every epoch (on every rank), merged into the epoch's
        history entry before it is saved.
    after_epoch : callable, optional
        ``after_epoch(entry)`` after the epoch's checkpoint is written. Returning True stops
        training there (early stopping): the entry gets ``"stopped_early": True`` and is saved, so
        a rerun from the checkpoint stops there too. Raising stops it as well (a rerun resumes).
    progress : Progress
    advice : str
        What a :class:`TrainingDivergedError` for a non-finite loss suggests.
    cudnn_benchmark : bool, default=False
        Let cuDNN pick kernels by timing them (fixed shapes pay off after a few steps); restored after.

    Returns
    -------
    history : list of dict
        Per epoch: ``epoch``, ``steps``, ``lr`` (of the epoch's first step), ``loss`` (mean per
        image), the mean per image of each of the steps' ``sums``, ``seconds``,
        ``images_per_second`` (all ranks together), and what ``evaluate`` returned.

    Raises
    ------
    TrainingDivergedError
        The loss is not finite, or the network's parameters or buffers are not after the last step
        or before a checkpoint save (a diverged state is never saved).
    """
    from tqdm.auto import tqdm

    dist = distributed if distributed is not None else Distributed(False, device)
    total_steps = epochs * steps_per_epoch if total_steps is None else total_steps
    history: list[dict] = []
    start_epoch = 0
    if checkpointing is not None:
        check_checkpoint_path(checkpointing.path)
        if checkpointing.resume and Path(checkpointing.path).is_file():
            start_epoch, history = _resume(checkpointing, network, optimizer, scheduler)
            if history and history[-1].get("stopped_early"):
                start_epoch = epochs
    # Reading the loss back (the divergence check, the progress bar's loss) synchronises a GPU,
    # whose steps are bound by kernel launches: there only every 25 steps.
    readback_every = 25 if device.type == "cuda" else 1
    every = CHECKPOINT_EVERY if checkpointing is None or checkpointing.every is None else checkpointing.every
    model = dist.wrap(network)
    verbose = progress.verbose and dist.is_main
    done = saved = min(total_steps, start_epoch * steps_per_epoch)
    bar = tqdm(total=total_steps, initial=done, disable=not verbose, desc=progress.description, unit="step",
               dynamic_ncols=True, delay=progress.delay, file=sys.stderr)
    if start_epoch and verbose:
        bar.write(f"{progress.description}: resuming {checkpointing.path} after epoch {start_epoch}/{epochs}",
                  file=sys.stderr)
    try:
        with _cudnn_benchmark(cudnn_benchmark and device.type == "cuda"):
            for epoch in range(start_epoch, epochs):
                model.train()
                lr = optimizer.param_groups[0]["lr"]
                loss_sum = torch.zeros((), dtype=torch.float64, device=device)
                sums: dict[str, torch.Tensor] = {}
                seen = 0
                steps = 0
                started = time.perf_counter()
                for step, out in enumerate(epoch_steps(model, epoch)):
                    optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    optimizer.step()
                    scheduler.step()
                    loss_sum += out.loss.detach() * out.images
                    for name, value in out.sums.items():
                        sums[name] = sums.get(name, 0) + value.detach()
                    seen += out.images
                    steps += 1
                    # DDP ranks must agree to stop, so they check the reduced loss after the epoch.
                    if not dist.enabled and (step + 1) % readback_every == 0:
                        if not math.isfinite(loss_sum.item()):
                            raise _diverged(loss_sum.item(), epoch, step, lr, advice)
                    bar.update(1)
                    if verbose and (step + 1) % max(readback_every, 10) == 0:
                        bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{loss_sum.item() / seen:.4f}",
                                        **{k: f"{float(v) / seen:.4g}" for k, v in sums.items()}, refresh=False)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - started
                names = list(sums)
                totals = torch.stack([loss_sum, torch.tensor(float(seen), dtype=torch.float64, device=device),
                                      *(torch.as_tensor(sums[k], device=device).double() for k in names)])
                reduced = dist.all_reduce(totals).tolist()
                total_loss, total_seen = reduced[0], reduced[1]
                if not math.isfinite(total_loss):
                    raise _diverged(total_loss, epoch, steps - 1, lr, advice)
                dist.broadcast_buffers(network)
                entry = {"epoch": epoch + 1, "steps": steps, "lr": lr, "loss": total_loss / total_seen,
                         **{k: v / total_seen for k, v in zip(names, reduced[2:])},
                         "seconds": seconds,
                         "images_per_second": total_seen / seconds if seconds > 0 else float("nan")}
                if evaluate is not None:
                    evaluation = evaluate(network)
                    entry.update(evaluation)
                    if verbose:
                        bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{entry['loss']:.4f}",
                                        **{k: "n/a" if v is None else f"{v:.4g}" for k, v in evaluation.items()})
                history.append(entry)
                # A small data set makes many short epochs: save at most every `every` steps (and
                # at the end); a resumed run replays from the last save.
                trained = epoch * steps_per_epoch + steps
                last = epoch + 1 == epochs
                save = checkpointing is not None and (trained - saved >= every or last)
                if save or last:
                    # The loss is checked before each step, so the last step's update shows only
                    # here (and BatchNorm statistics never show in a train-mode loss).
                    _check_finite_state(network, epoch, lr)
                if save:
                    if dist.is_main:
                        _save(checkpointing, epoch + 1, network, optimizer, scheduler, history)
                    saved = trained
                if after_epoch is not None and after_epoch(dict(entry)) is True and not last:
                    # Recorded (and saved), so that a rerun with the checkpoint stops here too.
                    entry["stopped_early"] = True
                    if checkpointing is not None:
                        _check_finite_state(network, epoch, lr)
                        if dist.is_main:
                            _save(checkpointing, epoch + 1, network, optimizer, scheduler, history)
                    break
    finally:
        bar.close()
    return history


# --------------------------------------------------------------------------
# Fine-tuning a detector: normal + outlier-exposure batches
# --------------------------------------------------------------------------


@dataclass
class TrainSettings:
    """Knobs of :func:`train`; the detectors fill these from their constructor parameters."""

    epochs: int | None = None
    steps: int = 1500
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: Sequence[float] = (0.6, 0.8)
    gamma: float = 0.1
    crop_padding: int = 4
    flip: bool = True
    seed: int = 0
    precision: str = "auto"
    compile: bool | str = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    verbose: bool = False
    checkpoint: str | os.PathLike | None = None
    fingerprint: str = ""
    description: str = "fit"
    progress_delay: float = 5.0

    def total_steps(self, steps_per_epoch: int) -> int:
        """``epochs`` passes over the normal set when ``epochs`` is set, else ``steps``."""
        return self.epochs * steps_per_epoch if self.epochs is not None else self.steps

    def milestone_steps(self, total: int) -> list[int]:
        """The paper's lr drops (epochs 60 and 80 of 100) as fractions of the ``total`` steps."""
        return sorted({round(f * total) for f in self.milestones if 0 < round(f * total) < total})


class TrainingData:
    """The normal set and the OE corpus, placed for fast batch gathering on ``device``.

    OE images are harmonised before they meet the network (:mod:`~skad_transfer.data.harmonize`):
    brought to ``outlier_shape`` (the normal images' own resolution and channels) when it is given,
    with ``match_histograms`` given each the luminance histogram of a normal training image (a fixed
    pairing per OE item, :func:`~skad_transfer.data.harmonize.reference_indices` with
    ``pairing_seed``), then JPEG round-tripped like the normal images.
    """

    def __init__(self, normal: torch.Tensor, corpus: OutlierCorpus | None, device: torch.device, input_size: int,
                 budget_fraction: float = 0.25, jpeg_quality: int | None = None,
                 outlier_shape: tuple[int, int, int] | None = None, match_histograms: bool = False,
                 pairing_seed: int = 0):
        self.device = device
        self.input_size = input_size
        self.jpeg_quality = jpeg_quality
        self.outlier_shape = outlier_shape
        # The normal images as given (before the JPEG round trip), the references' own statistics.
        self.references = normal if match_histograms else None
        self.pairing_seed = pairing_seed
        # contiguous(): a memory-mapped normal set is read into memory here, once.
        normal = resize_images(jpeg_roundtrip(normal, jpeg_quality), input_size).contiguous()
        self.normal = self._place(normal, budget_fraction)
        self.corpus = corpus
        self.outliers = None
        if corpus is not None:
            if device.type == "cuda" and corpus.nbytes and self._fits(corpus.nbytes, budget_fraction):
                self.outliers = self._upload(corpus)
            elif device.type == "cpu" and corpus.is_in_memory:
                self.outliers = resize_images(self.harmonize(corpus.all().data, torch.arange(len(corpus))),
                                              input_size)

    def _fits(self, nbytes: int, fraction: float) -> bool:
        if self.device.type != "cuda":
            return True
        free, _ = torch.cuda.mem_get_info(self.device)
        return nbytes < fraction * free

    def _place(self, images: torch.Tensor, fraction: float) -> torch.Tensor:
        if self.device.type == "cuda" and self._fits(images.numel() * images.element_size(), fraction):
            return images.to(self.device, non_blocking=True)
        return images

    def _upload(self, corpus: OutlierCorpus, chunk: int = 8192) -> torch.Tensor:
        parts = []
        for start in range(0, len(corpus), chunk):
            indices = torch.arange(start, min(start + chunk, len(corpus)))
            rows = self.harmonize(corpus.take(indices.numpy()), indices)
            parts.append(resize_images(rows.to(self.device, non_blocking=True), self.input_size))
        return torch.cat(parts)

    def harmonize(self, images: torch.Tensor, indices: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """OE images (corpus rows ``indices``) as the network sees them: the normal images'
        resolution, channels and (with ``match_histograms``) intensities, then the JPEG round trip."""
        images = like_source(images, self.outlier_shape)
        if self.references is not None:
            pairs = reference_indices(indices, self.references.shape[0], self.pairing_seed)
            images = torch.cat([match_luminance(images[i:i + chunk], self.references[pairs[i:i + chunk]])
                                for i in range(0, images.shape[0], chunk)]) if images.shape[0] else images
        return jpeg_roundtrip(images, self.jpeg_quality)

    # The index batches come from the CPU: non_blocking, so that a GPU-resident set takes them
    # without a stream synchronisation per step (a pageable source is staged by the driver, so the
    # copy is safe however soon the CPU tensor goes).
    def normal_batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.normal[indices.to(self.normal.device, non_blocking=True)].to(self.device, non_blocking=True)

    def outlier_batch(self, indices: torch.Tensor) -> torch.Tensor:
        if self.outliers is not None:
            rows = indices.to(self.outliers.device, non_blocking=True)
            return self.outliers[rows].to(self.device, non_blocking=True)
        rows = self.harmonize(self.corpus.take(indices.numpy()), indices)
        return resize_images(rows.to(self.device, non_blocking=True), self.input_size)


def _epoch_plan(n_normal: int, n_outlier: int, half: int, seed: int, epoch: int):
    """Per-step index batches of one epoch: a permutation of the normal set, and fresh OE draws
    (without replacement until the corpus is used up; see :mod:`~skad_transfer.data.sampling`)."""
    generator = seeded_generator(seed, epoch)
    order = torch.randperm(n_normal, generator=generator)
    steps = math.ceil(n_normal / half)
    normal_batches = [order[i * half:(i + 1) * half] for i in range(steps)]
    outlier_batches = None
    if n_outlier:
        # Successive permutations of the corpus, of which only the needed prefix is ever built, so
        # that memory and time per epoch do not grow with the corpus (10**9 items cost what 10**4 do).
        needed = sum(len(b) for b in normal_batches)
        draws = torch.cat([permutation_prefix(n_outlier, min(n_outlier, needed - start), generator)
                           for start in range(0, needed, n_outlier)])
        outlier_batches = list(torch.split(draws, [len(b) for b in normal_batches]))
    return normal_batches, outlier_batches


def train(
    network: nn.Module,
    data: TrainingData,
    objective: Objective,
    parameters: Sequence[nn.Parameter],
    settings: TrainSettings,
    *,
    mean,
    std,
    penalty: Callable[[], torch.Tensor] | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    after_epoch: Callable[[dict], Any] | None = None,
) -> list[dict]:
    """Fine-tune ``network`` in place with :func:`run_epochs`; returns the per-epoch history.

    Each step takes ``batch_size // 2`` normal images and as many OE images (none without a corpus),
    augments them with crop + flip, normalises them and minimises ``objective + penalty()`` with SGD
    (momentum, weight decay). Training lasts ``settings.steps`` steps, or ``settings.epochs`` passes
    over the normal set when that is set; the learning rate drops by ``gamma`` at the ``milestones``
    fractions of the steps (the paper's epochs 60 and 80 of 100). An epoch is one pass over the
    normal set (the last one may stop early). With ``settings.checkpoint`` the state (and
    ``settings.seed``) is saved at most every :data:`CHECKPOINT_EVERY` steps and at the end, and a
    matching checkpoint (same fingerprint and seed) is resumed from. The history's ``penalty`` is
    the mean of ``penalty()`` per image (0 without one). ``evaluate`` and ``after_epoch`` are
    :func:`run_epochs`'s end-of-epoch hooks (validation, early stopping). With ``settings.compile``
    (True or a mode, :func:`compiled`) the training steps call ``objective`` through
    ``torch.compile`` (the network's forward and backward as inductor kernels around the
    convolutions, replayed as CUDA graphs in the modes that use them); validation calls it as it is.

    Raises :class:`TrainingDivergedError` when the loss is not finite, or the network's parameters
    or buffers are not after the last step or before a checkpoint save.
    """
    device = settings.device
    precision = Precision.resolve(device, settings.precision)
    half = max(1, settings.batch_size // 2)
    n_normal = data.normal.shape[0]
    n_outlier = len(data.corpus) if data.corpus is not None else 0
    steps_per_epoch = math.ceil(n_normal / half)
    total_steps = settings.total_steps(steps_per_epoch)

    mean, std = on_device(mean, device), on_device(std, device)

    def augmented(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if settings.crop_padding or settings.flip:
            images = random_crop_flip(images, settings.crop_padding, flip=settings.flip, generator=generator)
        return precision.prepare(normalize(images, mean, std))

    step_objective = compiled(objective, settings.compile, settings.device)

    def epoch_steps(model: nn.Module, epoch: int) -> Iterator[Step]:
        normal_idx, outlier_idx = _epoch_plan(n_normal, n_outlier, half, settings.seed, epoch)
        augment_rng = seeded_generator(settings.seed, -1 - epoch, device=device)
        for step, idx in enumerate(normal_idx[:total_steps - epoch * steps_per_epoch]):
            x_normal = augmented(data.normal_batch(idx), augment_rng)
            x_outlier = None if outlier_idx is None else augmented(data.outlier_batch(outlier_idx[step]), augment_rng)
            with precision.autocast(device):
                loss = step_objective(model, x_normal, x_outlier).float()
            images = x_normal.shape[0] + (0 if x_outlier is None else x_outlier.shape[0])
            reg = penalty() if penalty is not None else torch.zeros((), device=device)
            yield Step(loss + reg if penalty is not None else loss, images, {"penalty": reg.detach() * images})

    checkpointing = None
    if settings.checkpoint:
        checkpointing = Checkpointing(settings.checkpoint, settings.fingerprint, settings.seed)
    with placed(network, device, precision):
        optimizer = torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum,
                                    weight_decay=settings.weight_decay)
        # Stepped once per optimizer step, so that the schedule is the same whatever the epoch length.
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, settings.milestone_steps(total_steps),
                                                         settings.gamma)
        return run_epochs(network, optimizer, scheduler, epoch_steps, epochs=math.ceil(total_steps / steps_per_epoch),
                          steps_per_epoch=steps_per_epoch, total_steps=total_steps, device=device,
                          checkpointing=checkpointing, evaluate=evaluate, after_epoch=after_epoch,
                          progress=Progress(bool(settings.verbose), settings.description, settings.progress_delay))


@torch.no_grad()
def apply_batched(function: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, device: torch.device,
                  mean, std, input_size: int, batch_size: int | None = None,
                  precision: str = "auto", jpeg_quality: int | None = None,
                  progress: str | None = None) -> torch.Tensor:
    """``function`` on normalised, resized batches of ``images`` on ``device``; results on the CPU (float32).

    Every batch is padded to the same size, so the kernels (whose blocking depends on the batch
    size) compute each image identically however many images come with it: a sample's output is
    bitwise the same scored alone, in a subset or in another order. With ``jpeg_quality`` every
    image first makes the JPEG round trip of :func:`~skad_transfer.data.harmonize.jpeg_roundtrip`,
    as the training images did. ``images`` may be a view of a memory-mapped file: only one batch of
    it is read into memory at a time. With ``progress`` (its label), a progress bar appears once the work
    has lasted 5 seconds.
    """
    from tqdm.auto import tqdm

    precision = Precision.resolve(device, precision)
    mean, std = on_device(mean, device), on_device(std, device)
    if batch_size is None:
        batch_size = 256 if device.type == "cuda" else 64
    # One output tensor, filled batch by batch: a list of per-batch results would leave small
    # long-lived blocks all over the heap between the large transient ones, and the process grows
    # with the number of batches (measured: +420 MB over 10**6 memory-mapped images).
    result = None
    starts = range(0, images.shape[0], batch_size)
    for start in tqdm(starts, desc=progress, unit="batch", disable=progress is None, delay=5.0, leave=False,
                      dynamic_ncols=True):
        # contiguous(): a memory-mapped batch (a strided view of the file) is read here, one batch at a time.
        batch = jpeg_roundtrip(images[start:start + batch_size].contiguous(), jpeg_quality)
        n = batch.shape[0]
        if n < batch_size:
            batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
        batch = resize_images(batch.to(device, non_blocking=True), input_size)
        with precision.autocast(device):
            out = function(precision.prepare(normalize(batch, mean, std)))
        if result is None:
            result = torch.empty((images.shape[0], *out.shape[1:]), dtype=torch.float32)
        result[start:start + n] = out[:n]
    return result if result is not None else torch.empty((0,))
