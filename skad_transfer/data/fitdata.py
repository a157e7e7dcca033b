"""One fit's data path: the normal images and the OE corpus as the network sees them in training.

Everything between what ``fit`` was given and the training batches is decided and applied here: the
JPEG round trip of every image (``jpeg_quality``), OE images brought to the normal images'
resolution and channels (``outlier_shape``, from ``match_outlier_exposure``), and whether OE images
take normal images' luminance histograms (``match_histograms``, decided for ``"auto"`` by
:meth:`TrainingData.for_fit`); the maths is :mod:`~skad_transfer.data.harmonize`'s. Training
(:func:`~skad_transfer.training.finetune.train`), the losses' and regularizers' preparation,
validation and the fitted score's calibration all read images through one :class:`TrainingData`;
scoring applies the same ``jpeg_quality`` (recorded on the detector as ``jpeg_quality_``).
"""

from __future__ import annotations

import torch

from .corpora import OutlierCorpus
from .harmonize import (INTENSITY_SEPARABILITY_THRESHOLD, jpeg_roundtrip, like_source, match_luminance,
                        reference_indices, sampled_intensity_separability)
from .images import resize_images

__all__ = ["TrainingData", "decide_match_histograms"]


def decide_match_histograms(normal: torch.Tensor, corpus: OutlierCorpus | None, match_histograms: bool | str,
                            outlier_shape: tuple[int, int, int] | None, seed: int) -> tuple[bool, float | None]:
    """Whether OE images get normal images' histograms, and the separability that decided it.

    ``match_histograms="auto"`` measures
    :func:`~skad_transfer.data.harmonize.sampled_intensity_separability` and matches at or above
    :data:`~skad_transfer.data.harmonize.INTENSITY_SEPARABILITY_THRESHOLD`; a bool is taken as
    given (separability None), and so is the absence of a corpus (False, None).
    """
    if corpus is None:
        return False, None
    if match_histograms != "auto":
        return bool(match_histograms), None
    separability = sampled_intensity_separability(normal, corpus, outlier_shape, seed)
    return bool(separability >= INTENSITY_SEPARABILITY_THRESHOLD), separability


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
        self.match_histograms = bool(match_histograms)
        self.intensity_separability: float | None = None
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

    @classmethod
    def for_fit(cls, normal: torch.Tensor, corpus: OutlierCorpus | None, device: torch.device, input_size: int, *,
                jpeg_quality: int | None, outlier_shape: tuple[int, int, int] | None,
                match_histograms: bool | str, seed: int) -> "TrainingData":
        """A fit's data path, with ``match_histograms="auto"`` decided on these images
        (:func:`decide_match_histograms`); the decision and its measure are the attributes
        ``match_histograms`` and ``intensity_separability``."""
        match, separability = decide_match_histograms(normal, corpus, match_histograms, outlier_shape, seed)
        data = cls(normal, corpus, device, input_size, jpeg_quality=jpeg_quality, outlier_shape=outlier_shape,
                   match_histograms=match, pairing_seed=seed)
        data.intensity_separability = separability
        return data

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
