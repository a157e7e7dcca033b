"""Deployment: a fitted detector as a self-contained ONNX model that scores uint8 images.

:func:`export_onnx` writes a graph that takes a batch of ``uint8`` images in NHWC layout
``(N, H, W, C)`` and returns ``score_samples`` (float32, ``(N,)``): channel replication for
grayscale, the resize to the network's input size (bilinear, antialiased, rounded to uint8 as the
package does), the normalisation with theta0's mean/std and the network with the detector's score
are all inside, so a runtime (``onnxruntime``, TensorRT, a browser) needs neither this package nor
torch. ``decision_function`` and ``predict`` follow from the score with the ``offset_`` stored in
the model's metadata (``skad_transfer.offset``): ``score - offset`` and its sign.

The one step an ONNX graph cannot do is the JPEG round trip that a detector fitted with
``jpeg_quality`` (the default, 75) applies before scoring. Such a detector is refused unless
``jpeg="caller"``: then the caller makes the round trip itself and the model scores what the
detector scores. :func:`onnx_inputs` prepares a batch for an exported model from its metadata: it
checks the images against the input the model takes (uint8 NHWC of the exported size), with errors
that say how to fix them, and makes the JPEG round trip at the quality in ``skad_transfer.jpeg_quality``
(libjpeg-turbo through Pillow, as the detector does; any encoder with the same settings gives the
same pixels). Exporting requires the optional extra ``onnx`` (``pip install skad-transfer[onnx]``);
:func:`onnx_inputs` needs numpy and Pillow only.

    session = onnxruntime.InferenceSession("detector.onnx")
    X = onnx_inputs(images_uint8_nhwc, session.get_modelmeta().custom_metadata_map)
    scores = session.run(None, {"images": X})[0]   # == det.score_samples(images_uint8_nhwc)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted
from torch import nn

__all__ = ["export_onnx", "onnx_inputs"]

JPEG_CHOICES = ("error", "caller")


class _ScoringGraph(nn.Module):
    """uint8 NHWC images -> the detector's normality scores, every preprocessing step included."""

    def __init__(self, network: nn.Module, normality, mean, std, input_size: int, channels: int):
        super().__init__()
        self.network = network
        self.normality = normality
        self.input_size = int(input_size)
        self.channels = int(channels)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        if self.channels == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False).round().clamp(0, 255)
        x = (x / 255.0 - self.mean) / self.std
        return self.normality(self.network, x)


def export_onnx(detector, path: str | os.PathLike, *, image_size: tuple[int, int] | None = None,
                jpeg: str = "error", opset_version: int = 18) -> Path:
    """Write ``detector`` (fitted) as an ONNX model scoring uint8 NHWC images; returns the path.

    Parameters
    ----------
    detector : TransferDetector
        A fitted ADIB, ADRA, DeepAD, HSC, DSVDD or DOC detector.
    path : str or path-like
        The ``.onnx`` file to write (atomically).
    image_size : (int, int), optional
        ``(H, W)`` of the images the model will take; by default the size of the images the
        detector was fitted on. They are resized to the network's input size inside the graph.
    jpeg : {"error", "caller"}, default="error"
        What to do when the detector scores after a JPEG round trip (``jpeg_quality_`` is set),
        which ONNX cannot express: refuse, or export and leave the round trip to the caller (see
        the module docstring).
    opset_version : int, default=18
        ONNX opset (18 has the antialiased resize).

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ValueError
        ``jpeg="error"`` for a detector with a JPEG round trip, or invalid arguments.
    ImportError
        When ``onnx``/``onnxscript`` (the extra ``onnx``) are not installed.

    Examples
    --------
    >>> from skad_transfer import ADIBDetector  # doctest: +SKIP
    >>> det = ADIBDetector(jpeg_quality=None).fit(X_normal, X_outlier)  # doctest: +SKIP
    >>> export_onnx(det, "detector.onnx")  # doctest: +SKIP
    >>> import onnxruntime  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("detector.onnx")  # doctest: +SKIP
    >>> scores = session.run(None, {"images": X_test_uint8_nhwc})[0]  # == det.score_samples(X_test)  # doctest: +SKIP
    """
    from ._io import atomic_path
    from .detectors.base import TransferDetector

    path = Path(path)
    if path.is_dir():  # before the export's work, not after it
        raise IsADirectoryError(f"path: {path} is a directory; name the .onnx file to write, e.g. "
                                f"{path / 'detector.onnx'}")
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(f"path: {path.parent} is a file, so {path} cannot be written into it")
    if not isinstance(detector, TransferDetector):
        raise TypeError(f"detector must be a fitted skad_transfer detector (ADIB, ADRA, ...), got "
                        f"{type(detector).__name__}")
    check_is_fitted(detector)
    if jpeg not in JPEG_CHOICES:
        raise ValueError(f"jpeg must be one of {JPEG_CHOICES}, got {jpeg!r}")
    jpeg_quality = getattr(detector, "jpeg_quality_", None)
    if jpeg_quality is not None and jpeg == "error":
        raise ValueError(
            f"jpeg: this detector scores images after a JPEG round trip (jpeg_quality_={jpeg_quality}), which an "
            f"ONNX graph cannot do; fit with jpeg_quality=None, or pass jpeg='caller' and make the round trip "
            f"before the model (skad_transfer.data.harmonize.jpeg_roundtrip(images, {jpeg_quality}))"
        )
    try:
        import onnx
        import onnxscript  # noqa: F401 - torch's exporter needs it
    except ImportError as error:
        raise ImportError("export_onnx needs the packages onnx and onnxscript: pip install 'skad-transfer[onnx]'") \
            from error
    if not hasattr(torch.export.Dim, "DYNAMIC"):
        raise ImportError(f"export_onnx needs torch >= 2.6 (its ONNX exporter); this is torch {torch.__version__}")
    channels, height, width = detector.image_shape_
    if image_size is not None:
        if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
                or not all(isinstance(v, int) and v > 0 for v in image_size)):
            raise ValueError(f"image_size must be (H, W) with positive ints, got {image_size!r}")
        height, width = image_size
    network = _cpu_copy(detector.network_)
    # The fitted score as score_samples computes it (the loss's score, kNN over the training features, or both).
    rule = detector._score_rule().to("cpu")
    graph = _ScoringGraph(network, rule, detector.mean_, detector.std_, detector.input_size_, channels).eval()
    example = torch.zeros((2, height, width, channels), dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(graph, (example,), input_names=["images"], output_names=["scores"],
                                    dynamic_shapes={"images": {0: torch.export.Dim.DYNAMIC}},
                                    opset_version=opset_version, dynamo=True,
                                    verbose=False)
    model = program.model_proto
    metadata = {"skad_transfer.estimator": type(detector).__name__, "skad_transfer.offset": repr(detector.offset_),
                "skad_transfer.jpeg_quality": "" if jpeg_quality is None else str(jpeg_quality),
                "skad_transfer.input": f"uint8 (N, {height}, {width}, {channels}) NHWC, 0..255",
                "skad_transfer.image_size": f"{height},{width},{channels}",  # read by onnx_inputs
                "skad_transfer.output": "score_samples (higher = more normal); decision = score - offset"}
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(path) as temporary:
        onnx.save(model, str(temporary))
    return path


def onnx_inputs(images, metadata: Mapping[str, str]) -> np.ndarray:
    """``images`` as an exported model takes them: checked, and JPEG round-tripped where the
    detector was fitted with ``jpeg_quality``.

    Parameters
    ----------
    images : numpy.ndarray of shape (N, H, W, C), uint8
        What the model takes (``skad_transfer.input`` in its metadata): NHWC, 0..255, the exported
        ``(H, W, C)``. Anything else is an error naming what came and the conversion.
    metadata : mapping of str to str
        The model's metadata, e.g. ``onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map``
        or ``{p.key: p.value for p in onnx.load(path).metadata_props}``.

    Returns
    -------
    images : numpy.ndarray of shape (N, H, W, C), uint8, C-contiguous
        With the JPEG round trip at ``skad_transfer.jpeg_quality`` made when the metadata has one
        (:func:`~skad_transfer.data.harmonize.jpeg_roundtrip`'s pixels); the images themselves otherwise.
    """
    from .data.harmonize import jpeg_roundtrip_nhwc

    size = metadata.get("skad_transfer.image_size")
    if size is None:  # a model exported before the key existed: the readable description has it
        found = re.search(r"\(N, (\d+), (\d+), (\d+)\)", metadata.get("skad_transfer.input", ""))
        if found is None:
            raise ValueError("metadata: not an skad_transfer model's metadata (no skad_transfer.image_size); pass "
                             "session.get_modelmeta().custom_metadata_map of a model written by export_onnx")
        size = ",".join(found.groups())
    expected = tuple(int(v) for v in size.split(","))
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images: expected a numpy array of uint8 (N, {', '.join(map(str, expected))}) NHWC images, "
                        f"got {type(images).__name__}; e.g. tensor.permute(0, 2, 3, 1).numpy() for an NCHW tensor")
    if images.dtype != np.uint8:
        hint = " (floats in 0..1: (images * 255).round().astype(np.uint8))" if images.dtype.kind == "f" else ""
        raise ValueError(f"images: the model takes uint8 0..255, got dtype {images.dtype}{hint}")
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        h, w, c = expected
        hint = (f"; NCHW? images.transpose(0, 2, 3, 1)" if images.ndim == 4 and tuple(images.shape[1:]) == (c, h, w)
                else "; export_onnx(..., image_size=(H, W)) exports a model for another size")
        raise ValueError(f"images: the model takes (N, {h}, {w}, {c}) NHWC images, got shape {images.shape}{hint}")
    quality = metadata.get("skad_transfer.jpeg_quality", "")
    return jpeg_roundtrip_nhwc(images, int(quality)) if quality else np.ascontiguousarray(images)


def _cpu_copy(network: nn.Module) -> nn.Module:
    import copy

    copied = copy.deepcopy(network).to("cpu").float().eval()
    return copied
