"""theta0: weights records, the registry, the cache directory, downloads with a hash check, safe loading.

A :class:`WeightsRecord` is to a checkpoint what torchvision's ``WeightsEnum`` entries are: where the
file comes from (a packaged asset, the cache directory, a URL), how inputs must be preprocessed for
it (input size, mean/std) and what it is (architecture, width, dataset, accuracy, sha256).

``weights=`` everywhere accepts ``None``, a registered name (:func:`list_weights`), a checkpoint path
or a record. A registered name resolves to, in order: its packaged file, the file of the same name
in the cache directory (``$SKAD_TRANSFER_HOME/weights``, default ``~/.cache/skad_transfer/weights``),
a download from its URL (checked against its sha256); failing all of these the error says which file
to put where. Checkpoints are read with ``torch.load(..., weights_only=True)``: a checkpoint file
cannot run code. A record's fields are checked when it is made (also the record stored in a
checkpoint), so a wrong ``arch``, ``mean`` or ``std`` is an error naming the field, never weights
silently not used or a NaN loss later.

Checkpoint files are either a flat state dict (the authors' ``resnet26.pth``) or
``{"state_dict": ..., "skad_transfer_weights": {...record fields...}}`` as written by
:func:`save_weights`; a ``module.`` prefix (DDP) is stripped.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import pickle
import re
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ._io import atomic_write
from ._paths import HOME_ENV, weights_dir

CIFAR_MEAN = (0.4914, 0.4824, 0.4467)
CIFAR_STD = (0.2471, 0.2435, 0.2616)
_RECORD_KEY = "skad_transfer_weights"
TORCHVISION_HUB_TIMEOUT = 5.0
"""Seconds to wait for torchvision's download server before saying which file to put where."""


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _channel_values(values, name: str, *, positive: bool) -> tuple[float, float, float]:
    """Three finite floats (one per RGB channel), as a tuple so that records stay hashable."""
    floats = None
    if not isinstance(values, (str, bytes)):  # a str of length 3 would otherwise pass as 3 characters
        try:
            floats = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            floats = None
    if floats is None or len(floats) != 3 or not all(math.isfinite(v) for v in floats):
        raise ValueError(f"{name} must be 3 finite numbers (one per RGB channel), got {values!r}")
    if positive and min(floats) <= 0:
        raise ValueError(f"{name} must be > 0 for every channel (the images are divided by it), got {values!r}")
    return floats


@dataclass(frozen=True)
class WeightsRecord:
    """A theta0 checkpoint: its source, the preprocessing it expects, and what it is.

    Parameters
    ----------
    name : str
        Registered name, or the file path for an unregistered file.
    arch : str, default="resnet26"
    width : int, default=64
    input_size : int, default=32
    mean, std : tuple of 3 floats
        Per-channel normalisation applied to 0..1 images before the network.
    filename : str, optional
        File name inside the cache directory (and of the download).
    path : str, optional
        A local file that holds the checkpoint (a packaged asset or a user's file).
    url : str, optional
        Where to download ``filename`` from when it is not in the cache.
    sha256 : str, optional
        Hex digest the file must have; checked after every download and on every load.
    meta : dict
        Anything else: dataset, epochs, val_top1, the command that made it, ...
    torchvision : str, optional
        The torchvision weights entry (e.g. ``"ResNet50_Weights.IMAGENET1K_V2"``) whose file this
        is: torchvision's API finds, downloads (into torch hub's cache, with its hash check) and
        reads it (see :func:`torchvision_record`).

    Raises
    ------
    ValueError or TypeError
        When a field is invalid, naming the field: an ``arch`` that is not a ``backbone=``
        name (:data:`skad_transfer.nn.BACKBONES`), a non-positive ``width``, an unsupported ``input_size``, ``mean``
        or ``std`` that are not 3 finite numbers (``std`` > 0), a ``filename`` with folders, a
        ``sha256`` that is not 64 hex digits. ``mean`` and ``std`` are stored as tuples of floats.
    """

    name: str
    arch: str = "resnet26"
    width: int = 64
    input_size: int = 32
    mean: tuple = CIFAR_MEAN
    std: tuple = CIFAR_STD
    filename: str | None = None
    path: str | None = None
    url: str | None = None
    sha256: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    torchvision: str | None = None

    def __post_init__(self):
        # Checked here, where the record is made, because a bad field otherwise surfaces far away:
        # a zero std as a NaN loss blamed on the lr, a wrong arch as weights silently not used.
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"WeightsRecord: name must be a non-empty str, got {self.name!r}")
        where = f"WeightsRecord {self.name!r}"
        from .nn import BACKBONES

        if self.arch not in BACKBONES:
            raise ValueError(f"{where}: arch={self.arch!r} is not a network this package builds; "
                             f"supported archs are {sorted(BACKBONES)}")
        object.__setattr__(self, "width", _check_positive_int(self.width, f"{where}: width"))
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, numbers.Integral):
            raise ValueError(f"{where}: input_size must be an int, got {self.input_size!r}")
        try:
            object.__setattr__(self, "input_size", BACKBONES[self.arch].check_input_size(int(self.input_size)))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        if self.torchvision is not None and not isinstance(self.torchvision, str):
            raise TypeError(f"{where}: torchvision must name a torchvision weights entry, got "
                            f"{type(self.torchvision).__name__}")
        object.__setattr__(self, "mean", _channel_values(self.mean, f"{where}: mean", positive=False))
        object.__setattr__(self, "std", _channel_values(self.std, f"{where}: std", positive=True))
        if self.filename is not None and (not isinstance(self.filename, str) or self.filename in ("", ".", "..")
                                          or "/" in self.filename or "\\" in self.filename):
            # It is joined to the cache directory: a path here would read or write outside it.
            raise ValueError(f"{where}: filename must be a plain file name (no folders), got {self.filename!r}")
        if self.path is not None:
            if not isinstance(self.path, (str, os.PathLike)):
                raise TypeError(f"{where}: path must be a str or path-like, got {type(self.path).__name__}")
            object.__setattr__(self, "path", os.fspath(self.path))
        if self.url is not None and not isinstance(self.url, str):
            raise TypeError(f"{where}: url must be a str, got {type(self.url).__name__}")
        if self.sha256 is not None:
            if not isinstance(self.sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
                raise ValueError(f"{where}: sha256 must be 64 hex digits, got {self.sha256!r}")
            object.__setattr__(self, "sha256", self.sha256.lower())
        if not isinstance(self.meta, Mapping):
            raise TypeError(f"{where}: meta must be a mapping, got {type(self.meta).__name__}")

    def locate(self, progress: bool = False) -> Path:
        """The local checkpoint file, downloading it into the cache directory if needed."""
        if self.path is not None:
            path = Path(self.path)
            if path.is_dir():
                raise IsADirectoryError(f"weights {self.name!r}: {path} is a directory; path= must name the "
                                        f"checkpoint file itself (e.g. theta0.pth)")
            if not path.is_file():
                raise FileNotFoundError(f"weights {self.name!r}: file {path} does not exist")
            return path
        if self.filename is None:
            raise ValueError(f"weights {self.name!r} names neither a path nor a filename")
        cached = weights_dir() / self.filename
        if cached.is_file():
            return cached
        if self.url is not None:
            return download_file(self.url, cached, sha256=self.sha256, progress=progress)
        source = self.meta.get("source", "its publisher")
        raise FileNotFoundError(
            f"weights {self.name!r} are not available offline: put the file {self.filename!r} "
            f"(from {source}) at {cached} (the cache directory is set by ${HOME_ENV}), or pass its "
            f"path as weights=..."
        )

    def load_state_dict(self, progress: bool = False) -> dict[str, torch.Tensor]:
        if self.torchvision is not None:
            return _torchvision_state_dict(self, progress)
        path = self.locate(progress=progress)
        if self.sha256 is not None:
            digest = sha256_file(path)
            if digest != self.sha256:
                raise OSError(
                    f"weights {self.name!r}: {path} has sha256 {digest}, expected {self.sha256}; "
                    f"the file is corrupt or a different checkpoint; delete it and retry"
                )
        state, _ = read_checkpoint(path)
        return state

    def to_dict(self) -> dict:
        out = asdict(self)
        out["mean"], out["std"], out["meta"] = list(self.mean), list(self.std), dict(self.meta)
        return out


_REGISTRY: dict[str, WeightsRecord | Callable[[], WeightsRecord]] = {}


def register_weights(record: WeightsRecord, *, overwrite: bool = False) -> WeightsRecord:
    """Make ``record`` resolvable by its name (``weights=record.name``).

    Parameters
    ----------
    record : WeightsRecord
        The weights' source, preprocessing and checks.
    overwrite : bool, default=False
        Replace a record already registered under that name (else a ValueError).

    Returns
    -------
    record : WeightsRecord
    """
    if not isinstance(record, WeightsRecord):
        raise TypeError(f"record must be a WeightsRecord, got {type(record).__name__}")
    if record.name in _REGISTRY and not overwrite:
        raise ValueError(f"weights {record.name!r} are already registered; pass overwrite=True")
    _REGISTRY[record.name] = record
    return record


def _register_lazy(name: str, make_record: Callable[[], WeightsRecord]) -> None:
    """Register a record built on first use (so importing the package reads no checkpoint)."""
    _REGISTRY[name] = make_record


def unregister_weights(name: str) -> None:
    """Forget a registered name (no error if it is unknown)."""
    _REGISTRY.pop(name, None)


def list_weights() -> list[str]:
    """Names accepted by ``weights=``."""
    return sorted(_REGISTRY)


def get_weights(name: str) -> WeightsRecord:
    """The record registered as ``name`` (built on first use for lazy entries such as ``"default"``)."""
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"weights: unknown name {name!r}; registered names are {list_weights()}, or pass a "
            f"checkpoint path or a WeightsRecord"
        ) from None
    if not isinstance(entry, WeightsRecord):
        entry = _REGISTRY[name] = entry()
    return entry


def resolve_weights(weights, arch: str = "resnet26") -> WeightsRecord | None:
    """``None`` | name | checkpoint path | WeightsRecord | torchvision entry -> WeightsRecord (or None).

    ``arch`` is the backbone the weights are for. For a torchvision ResNet a name is torchvision's
    (``"IMAGENET1K_V1"``, ``"DEFAULT"`` or the full ``"ResNet50_Weights.IMAGENET1K_V2"``;
    ``"default"`` means torchvision's ``DEFAULT``) and a file holds a torchvision state dict. Weights
    made for another network are a ValueError.
    """
    record = _resolve(weights, arch)
    if record is not None and record.arch != arch:
        raise ValueError(f"weights {record.name!r} are for {record.arch}, not for backbone={arch!r}")
    return record


def _resolve(weights, arch: str) -> WeightsRecord | None:
    if weights is None or isinstance(weights, WeightsRecord):
        return weights
    from .nn import BACKBONES, TORCHVISION_RESNETS

    if arch not in BACKBONES:
        raise ValueError(f"backbone: unknown name {arch!r}; expected one of {sorted(BACKBONES)}")
    if arch in TORCHVISION_RESNETS and not isinstance(weights, os.PathLike):
        entry = _torchvision_entry(weights, arch)
        if entry is not None:
            return torchvision_record(entry)
    if isinstance(weights, os.PathLike) or isinstance(weights, str):
        text = os.fspath(weights)
        if isinstance(weights, str) and weights in _REGISTRY:
            return get_weights(weights)
        path = Path(text).expanduser()
        if path.is_file():
            return record_from_file(path, arch=arch)
        if path.is_dir():
            raise IsADirectoryError(
                f"weights: {path} is a directory, not a checkpoint file; pass the file itself (a .pth/.pt "
                f"written by save_weights or skad-transfer pretrain, or the authors' resnet26.pth), or a "
                f"registered name {list_weights()}"
            )
        if isinstance(weights, os.PathLike) or os.sep in text or path.suffix in (".pth", ".pt", ".ckpt"):
            raise FileNotFoundError(f"weights: checkpoint file {path} does not exist")
        if text not in _REGISTRY:
            owners = _torchvision_owners(text)
            if owners:
                raise ValueError(
                    f"weights: {text!r} names torchvision weights of {', '.join(owners)}, not of backbone={arch!r}; "
                    f"pass backbone={owners[0]!r} with them, or for {arch} one of {list_weights()} or a checkpoint path"
                )
        return get_weights(text)
    raise TypeError(
        f"weights: expected None, a registered name, a checkpoint path or a WeightsRecord, "
        f"got {type(weights).__name__}"
    )


def read_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(state dict, record fields or None) from a checkpoint file, loaded safely."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        if isinstance(error, pickle.UnpicklingError) and "weights_only" in str(error):
            # Not torch's advice to reload with weights_only=False: for a file of unknown origin that
            # is exactly what runs its code. Only what the safe unpickler refused is kept.
            detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\n|$)", str(error))
            raise OSError(
                f"weights: could not read checkpoint {path}: the safe (weights-only) load refused it "
                f"({detail.group(1).strip() if detail else 'not a checkpoint of tensors'}), and nothing else is "
                f"tried, since unpickling other content can run code. A state dict saved with "
                f"torch.save(model.state_dict(), path) or skad_transfer.weights.save_weights loads"
            ) from error
        raise OSError(f"weights: could not read checkpoint {path}: {type(error).__name__}: {error}") from error
    fields = None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        fields = obj.get(_RECORD_KEY)
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        # The file was read: what it holds is wrong, so this is a ValueError, not an OSError.
        found = type(obj).__name__ if not isinstance(obj, Mapping) else "a mapping with non-tensor values"
        raise ValueError(f"weights: {path} does not hold a state dict of tensors (found {found})")
    if not all(isinstance(k, str) for k in obj):
        raise ValueError(f"weights: {path} does not hold a state dict (its keys are not all parameter names)")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}
    return state, fields


def record_from_file(path, arch: str = "resnet26") -> WeightsRecord:
    """A record for an unregistered checkpoint file: the record stored in it, else one for ``arch``
    (a ResNet26's width is read off its stem conv; a torchvision network gets the preprocessing of
    its ``DEFAULT`` weights)."""
    path = Path(path)
    state, fields = read_checkpoint(path)
    if fields is not None and not isinstance(fields, Mapping):
        raise ValueError(f"weights: {path} stores an invalid record ({_RECORD_KEY!r} is a "
                         f"{type(fields).__name__}, not a mapping)")
    if fields:
        known = {k: v for k, v in fields.items() if k in WeightsRecord.__dataclass_fields__}
        known.update(name=str(path), path=str(path), filename=None, url=None, torchvision=None)
        known["sha256"] = None  # the file itself is the source of truth; a copy may be renamed
        try:
            record = WeightsRecord(**known)
        except (TypeError, ValueError) as error:
            raise ValueError(f"weights: {path} stores an invalid record: {error}") from error
        stem = state.get("pre_conv.weight")
        if stem is not None and stem.ndim == 4 and int(stem.shape[0]) != record.width:
            raise ValueError(f"weights: {path} stores width={record.width} in its record but its weights have "
                             f"width {int(stem.shape[0])}")
        return record
    if arch != "resnet26":
        if "conv1.weight" not in state:
            raise ValueError(f"weights: {path} is not a torchvision {arch} state dict (no 'conv1.weight'; "
                             f"first keys: {list(state)[:5]})")
        return _torchvision_file_record(path, arch)
    if "pre_conv.weight" not in state:
        raise ValueError(
            f"weights: {path} is not a ResNet26 checkpoint (no 'pre_conv.weight'; first keys: "
            f"{list(state)[:5]})"
        )
    return WeightsRecord(name=str(path), width=int(state["pre_conv.weight"].shape[0]), path=str(path),
                         meta={"source": str(path)})


def save_weights(network: nn.Module, path, *, name: str | None = None, mean=CIFAR_MEAN, std=CIFAR_STD,
                 meta: Mapping[str, Any] | None = None) -> WeightsRecord:
    """Write ``network``'s state dict with its record; returns the record (with the file's sha256)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = WeightsRecord(
        name=name or path.stem, arch=getattr(network, "arch", "resnet26"), width=int(getattr(network, "width", 64)),
        input_size=int(network.input_size),
        mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std), filename=path.name,
        meta=dict(meta or {}),
    )
    fields = record.to_dict()
    state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
    atomic_write(path, lambda handle: torch.save({"state_dict": state, _RECORD_KEY: fields}, handle))
    return replace(record, path=str(path), sha256=sha256_file(path))


def load_backbone_state(network: nn.Module, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Load theta0 into ``network``: every backbone key must match; the head only if shapes agree.

    Raises ``ValueError`` listing missing keys, unexpected keys and shape mismatches.
    """
    own = network.state_dict()
    head = getattr(network, "head_name", "linears") + "."
    head_fits = all(k in state and state[k].shape == own[k].shape for k in own if k.startswith(head))
    wanted = {k for k in own if head_fits or not k.startswith(head)}
    given = {k for k in state if head_fits or not k.startswith(head)}
    # Checkpoints from before BatchNorm counted its batches lack num_batches_tracked; it is unused.
    missing = sorted(k for k in wanted - given if not k.endswith("num_batches_tracked"))
    unexpected = sorted(given - wanted)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}"
        for k in wanted & given if state[k].shape != own[k].shape
    )
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if keys:
            shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise ValueError(f"{source} do not fit this {type(network).__name__}: " + "; ".join(problems))
    network.load_state_dict({k: state[k] for k in wanted & given}, strict=False)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, destination, *, sha256: str | None = None, progress: bool = False) -> Path:
    """Stream ``url`` (http(s) or file://) to ``destination`` atomically, checking ``sha256``.

    Nothing is left at ``destination`` unless the download completed and its digest matched.
    """
    # Not torch.hub.download_url_to_file (torch 2.x), which was tried: it opens the URL without a
    # timeout, so a server that accepts and then stalls holds the caller forever (here: 60 s of
    # silence); it takes ``hash_prefix``, so a shortened sha256 passes as a prefix (here the digest
    # must equal); it creates its ".partial" file before parsing the URL, leaving it behind for a
    # malformed one; and it reports a wrong hash as a RuntimeError. The transfer is a short loop, and
    # atomic_write gives the same temp-file-and-rename guarantee.
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()

    def write(handle):
        try:
            response = urllib.request.urlopen(url, timeout=60)
        except Exception as error:
            raise OSError(f"could not download {url}: {error}; put the file at {destination} instead") from error
        total = int(response.headers.get("Content-Length") or 0) or None
        from tqdm.auto import tqdm

        with response, tqdm(total=total, unit="B", unit_scale=True, disable=not progress,
                            desc=destination.name) as bar:
            while block := response.read(1 << 20):
                digest.update(block)
                handle.write(block)
                bar.update(len(block))
        if sha256 is not None and digest.hexdigest() != sha256:
            raise OSError(f"sha256 mismatch for {url}: expected {sha256}, got {digest.hexdigest()}")

    atomic_write(destination, write)
    return destination



def _torchvision_owners(name: str) -> list[str]:
    """The torchvision ResNets that have weights called ``name`` (e.g. ``"IMAGENET1K_V1"``)."""
    from .nn import TORCHVISION_RESNETS

    owners = []
    for arch in TORCHVISION_RESNETS:  # in their own order: resnet18 first
        try:
            if _torchvision_entry(name, arch) is not None:
                owners.append(arch)
        except (ValueError, KeyError):
            continue
    return owners


def _torchvision_entry(weights, arch: str):
    """The torchvision weights entry that ``weights`` names for ``arch``, or None if it names none."""
    from torchvision.models import WeightsEnum, get_model_weights, get_weight

    enum = get_model_weights(arch)
    if isinstance(weights, WeightsEnum):
        if weights not in list(enum):
            raise ValueError(f"weights: {weights} are not weights for backbone={arch!r} (those are "
                             f"{[str(e) for e in enum]})")
        return weights
    if not isinstance(weights, str):
        return None
    if weights in ("default", "DEFAULT"):
        return enum.DEFAULT
    if weights in enum.__members__:
        return enum[weights]
    if "." in weights and weights.split(".", 1)[0].endswith("_Weights"):
        try:
            entry = get_weight(weights)
        except (ValueError, KeyError, AttributeError):
            raise ValueError(f"weights: torchvision has no weights {weights!r}; for {arch} it has "
                             f"{[str(e) for e in enum]}") from None
        return _torchvision_entry(entry, arch)
    return None


def torchvision_record(entry) -> WeightsRecord:
    """The record of a torchvision weights entry (e.g. ``ResNet50_Weights.IMAGENET1K_V2``).

    Source and preprocessing are torchvision's: the URL and the file name in torch hub's cache; the
    input size (the transforms' crop) and mean/std of ``entry.transforms()``. ``meta`` keeps the
    entry's ImageNet top-1 and recipe. Reading it (:meth:`WeightsRecord.load_state_dict`) goes
    through ``entry.get_state_dict`` (a download into the cache with torchvision's hash check).
    """
    arch = _torchvision_arch(entry)
    transforms = entry.transforms()
    metrics = entry.meta.get("_metrics", {}).get("ImageNet-1K", {})
    full_name = f"{type(entry).__name__}.{entry.name}"
    return WeightsRecord(
        name=full_name, arch=arch, width=64, input_size=int(transforms.crop_size[0]), mean=tuple(transforms.mean),
        std=tuple(transforms.std), filename=os.path.basename(entry.url), url=entry.url, torchvision=full_name,
        meta={"source": "torchvision", "dataset": "ImageNet-1K", "recipe": entry.meta.get("recipe"),
              "acc@1": metrics.get("acc@1"), "resize_size": int(transforms.resize_size[0])},
    )


def _torchvision_arch(entry) -> str:
    from torchvision.models import get_model_weights

    from .nn import TORCHVISION_RESNETS

    for arch in TORCHVISION_RESNETS:
        if type(entry) is get_model_weights(arch):
            return arch
    raise ValueError(f"weights: {entry} are not for a torchvision ResNet ({TORCHVISION_RESNETS})")


def _torchvision_file_record(path: Path, arch: str) -> WeightsRecord:
    """A local torchvision state dict, preprocessed like ``arch``'s ``DEFAULT`` weights (ImageNet)."""
    from torchvision.models import get_model_weights

    default = torchvision_record(get_model_weights(arch).DEFAULT)
    return WeightsRecord(name=str(path), arch=arch, width=64, input_size=default.input_size, mean=default.mean,
                         std=default.std, path=str(path), meta={"source": str(path)})


def torchvision_cache_file(record: WeightsRecord) -> Path:
    """Where torchvision keeps (and looks for) a torchvision record's file: torch hub's cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / record.filename


def _torchvision_state_dict(record: WeightsRecord, progress: bool) -> dict[str, torch.Tensor]:
    from torchvision.models import get_weight

    cached = torchvision_cache_file(record)
    if not cached.is_file() and not _reachable(record.url, TORCHVISION_HUB_TIMEOUT):
        # torch.hub would wait on the network for minutes; say at once what to do instead.
        raise FileNotFoundError(
            f"weights {record.name!r} are not in torch hub's cache and {record.url} cannot be reached: "
            f"download that file and put it at {cached} (the cache folder follows $TORCH_HOME), or pass "
            f"the path of a local copy as weights=..."
        )
    try:
        return dict(get_weight(record.torchvision).get_state_dict(progress=progress, check_hash=True))
    except RuntimeError as error:  # torch.hub's hash check
        raise OSError(f"weights {record.name!r}: {cached}: {error}; delete the file and retry") from error


def _reachable(url: str, timeout: float) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds."""
    import socket
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


register_weights(WeightsRecord(
    name="transferad-resnet26",
    width=64,
    input_size=32,
    filename="resnet26.pth",
    meta={
        "source": "the authors of Deecke et al. (2021), Google Drive file id 1uRmyJfs5OW2s0USoue6WbPdr_04MNOFI "
                  "(linked from github.com/VICO-UoE/TransferAD)",
        "dataset": "ImageNet at 32x32",
        "paper": "Transfer-Based Semantic Anomaly Detection, ICML 2021",
    },
))


DEFAULT_WEIGHTS_FILE = Path(__file__).parent / "assets" / "resnet26-w16-tinyimagenet32.pth"
DEFAULT_WEIGHTS_SHA256 = "b984c5e63cca1b01f1944b0aab5411ab011f32074672c96c458bfeccc00e315e"


def _default_record() -> WeightsRecord:
    """The embedded theta0: ResNet26 width 16, pretrained by ``skad-transfer pretrain`` on
    Tiny-ImageNet-32 (``docs/weights.md`` has the command, its wall time and val top-1)."""
    record = record_from_file(DEFAULT_WEIGHTS_FILE)
    return replace(record, name="default", filename=DEFAULT_WEIGHTS_FILE.name, sha256=DEFAULT_WEIGHTS_SHA256)


if DEFAULT_WEIGHTS_FILE.is_file():
    _register_lazy("default", _default_record)
