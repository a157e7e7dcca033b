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
``jpeg="caller"``: then the caller makes the round trip itself
(:func:`skad_transfer.data.harmonize.jpeg_roundtrip` with the quality in the metadata
``skad_transfer.jpeg_quality``, or the same encoder anywhere) and the model scores what the detector
scores. Requires the optional extra ``onnx`` (``pip install skad-transfer[onnx]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted
from torch import nn

__all__ = ["export_onnx"]

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
    path = Path(path)
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
                "skad_transfer.output": "score_samples (higher = more normal); decision = score - offset"}
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(path) as temporary:
        onnx.save(model, str(temporary))
    return path


def _cpu_copy(network: nn.Module) -> nn.Module:
    import copy

    copied = copy.deepcopy(network).to("cpu").float().eval()
    return copied
