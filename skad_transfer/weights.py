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

This module is the data and I/O layer, as torchvision's ``models/_api.py``: it imports no network.
Each network family (:mod:`skad_transfer.nn`) registers in :data:`ARCHS` the class that checks and
reads its records (:class:`~skad_transfer.nn.Backbone`'s ``check_input_size``, ``find_weights``,
``record_for_state``, ``check_stored_record``, ``read_weights``) and declares its own records: the
paper's ResNet26 its checkpoints (:mod:`skad_transfer.nn.resnet`), torchvision's ResNets torchvision's
entries (:mod:`skad_transfer.nn.torchvision_resnet`). Loading a state dict into a network is
:func:`skad_transfer.nn.load_backbone_state`.
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
from typing import Any, Mapping

import torch
from torch import nn

from ._io import atomic_write
from ._paths import HOME_ENV, weights_dir
from ._registry import Registry

CIFAR_MEAN = (0.4914, 0.4824, 0.4467)
CIFAR_STD = (0.2471, 0.2435, 0.2616)
_RECORD_KEY = "skad_transfer_weights"

ARCHS = Registry("backbone", unknown="backbone: unknown name {name!r}; expected one of {choices}")
"""The networks a record can be for (its ``arch``), each with the class that checks and reads its
records: the :class:`~skad_transfer.nn.Backbone` that builds it, registered here by
:func:`skad_transfer.nn.register_backbone` (this module imports no network)."""

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
        ResNet26's width; a torchvision network has none (its records keep the placeholder 64).
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
        reads it (see :func:`skad_transfer.nn.torchvision_record`).

    Raises
    ------
    ValueError or TypeError
        When a field is invalid, naming the field: an ``arch`` that is not a ``backbone=``
        name (:data:`ARCHS`, the same as :data:`skad_transfer.nn.BACKBONES`), a non-positive ``width``, an
        unsupported ``input_size`` (the arch's backbone says which it takes), ``mean``
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
        if self.arch not in ARCHS:
            raise ValueError(f"{where}: arch={self.arch!r} is not a network this package builds; "
                             f"supported archs are {ARCHS.names()}")
        object.__setattr__(self, "width", _check_positive_int(self.width, f"{where}: width"))
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, numbers.Integral):
            raise ValueError(f"{where}: input_size must be an int, got {self.input_size!r}")
        try:
            object.__setattr__(self, "input_size", ARCHS[self.arch].check_input_size(int(self.input_size)))
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
        """The checkpoint's state dict: read by the arch's backbone where it reads its own records
        (torchvision's entries, through torchvision's API), else from :meth:`locate`'s file, checked
        against ``sha256``."""
        state = ARCHS[self.arch].read_weights(self, progress)
        if state is not None:
            return state
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


_REGISTRY: dict = {}
"""The registered records by name (a lazy entry until first use): the table of :data:`WEIGHTS`."""

WEIGHTS = Registry(
    "weights", store=lambda: _REGISTRY,
    unknown="weights: unknown name {name!r}; registered names are {choices}, or pass a checkpoint path or a "
            "WeightsRecord",
    duplicate="weights {name!r} are already registered; pass overwrite=True",
)
"""The names ``weights=`` accepts (:func:`register_weights`, :func:`list_weights`, :func:`get_weights`)."""


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
    return WEIGHTS.register(record.name, record, overwrite=overwrite)


def unregister_weights(name: str) -> None:
    """Forget a registered name (no error if it is unknown)."""
    WEIGHTS.unregister(name)


def list_weights() -> list[str]:
    """Names accepted by ``weights=``."""
    return WEIGHTS.names()


def get_weights(name: str) -> WeightsRecord:
    """The record registered as ``name`` (built on first use for lazy entries such as ``"default"``)."""
    return WEIGHTS[name]


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
    backbone = ARCHS[arch]
    if not isinstance(weights, os.PathLike):
        record = backbone.find_weights(arch, weights)  # names of the backbone's own (torchvision's entries)
        if record is not None:
            return record
    if isinstance(weights, os.PathLike) or isinstance(weights, str):
        text = os.fspath(weights)
        if isinstance(weights, str) and weights in WEIGHTS:
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
        if text not in WEIGHTS:
            owners = _owners(text)
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


def _owners(name: str) -> list[str]:
    """The archs whose backbone names weights ``name`` itself (e.g. torchvision's ``"IMAGENET1K_V1"``)."""
    owners = []
    for arch in ARCHS:  # in registration order: resnet18 first of torchvision's
        try:
            if ARCHS[arch].find_weights(arch, name) is not None:
                owners.append(arch)
        except (ValueError, KeyError):
            continue
    return owners


def record_from_file(path, arch: str = "resnet26") -> WeightsRecord:
    """A record for an unregistered checkpoint file: the record stored in it, else the one ``arch``'s
    backbone makes of its state dict (a ResNet26's width is read off its stem conv; a torchvision
    network gets the preprocessing of its ``DEFAULT`` weights)."""
    path = Path(path)
    backbone = ARCHS[arch]
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
        ARCHS[record.arch].check_stored_record(record, path, state)
        return record
    return backbone.record_for_state(arch, path, state)


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

