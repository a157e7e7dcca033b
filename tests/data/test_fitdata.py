"""One fit's data path: skad_transfer.data.fitdata."""

import numpy as np
import pytest
import torch

from skad_transfer.data.corpora import OutlierCorpus
from skad_transfer.data.fitdata import TrainingData
from skad_transfer.data.harmonize import (INTENSITY_SEPARABILITY_THRESHOLD, jpeg_roundtrip, luminance, match_luminance,
                                          reference_indices)
from skad_transfer.inference import apply_batched
from skad_transfer.nn import resnet26

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def problem():
    rng = np.random.default_rng(0)
    normal = torch.from_numpy(rng.integers(0, 100, (48, 3, 32, 32), dtype=np.uint8))
    corpus = OutlierCorpus(rng.integers(100, 256, (40, 32, 32, 3), dtype=np.uint8))
    return normal, corpus


def test_jpeg_quality_harmonises_normal_oe_and_scored_images_alike():
    normal, corpus = problem()
    data = TrainingData(normal, corpus, torch.device("cpu"), 32, jpeg_quality=75)
    assert not torch.equal(data.normal, normal)  # re-encoded
    assert torch.equal(data.outlier_batch(torch.arange(3)),
                       jpeg_roundtrip(corpus.take(np.arange(3)), 75))
    net = resnet26(width=4).eval()
    kwargs = dict(device=torch.device("cpu"), mean=MEAN, std=STD, input_size=32)
    assert torch.equal(apply_batched(net, normal, jpeg_quality=75, **kwargs), apply_batched(net, data.normal, **kwargs))


def test_match_histograms_gives_oe_images_normal_intensities_with_a_pairing_fixed_per_item():
    normal, corpus = problem()  # normal images in 0..99, OE images in 100..255
    data = TrainingData(normal, corpus, torch.device("cpu"), 32, match_histograms=True, pairing_seed=5)
    batch = data.outlier_batch(torch.tensor([7, 3, 7, 12]))
    # The OE images now have the normal images' brightness (luma ~50, not ~177), colour kept aside.
    assert abs(luminance(batch).mean() - luminance(normal).mean()) < 5
    assert torch.equal(batch[0], batch[2])  # the same item always meets the same reference
    pairs = reference_indices(torch.tensor([7, 3, 12]), len(normal), 5)
    expected = match_luminance(corpus.take([7, 3, 12]), normal[pairs])
    assert torch.equal(batch[[0, 1, 3]], expected)
    data.outliers = None  # read lazily, batch by batch: the same images
    assert torch.equal(data.outlier_batch(torch.tensor([7, 3, 7, 12])), batch)
    assert data.references is normal
    assert TrainingData(normal, corpus, torch.device("cpu"), 32).references is None


def test_a_fits_data_path_decides_histogram_matching_on_its_images():
    normal, corpus = problem()  # normal images in 0..99, OE images in 100..255: told apart by brightness alone
    cpu = torch.device("cpu")
    auto = TrainingData.for_fit(normal, corpus, cpu, 32, jpeg_quality=None, outlier_shape=None,
                                match_histograms="auto", seed=0)
    assert auto.intensity_separability >= INTENSITY_SEPARABILITY_THRESHOLD and auto.match_histograms
    assert abs(luminance(auto.outlier_batch(torch.arange(8))).mean() - luminance(normal).mean()) < 5
    # Alike images (OE drawn from the normal images' own range) are not matched.
    alike = OutlierCorpus(normal[:40].permute(0, 2, 3, 1).numpy())
    kept = TrainingData.for_fit(normal, alike, cpu, 32, jpeg_quality=None, outlier_shape=None,
                                match_histograms="auto", seed=0)
    assert kept.intensity_separability < INTENSITY_SEPARABILITY_THRESHOLD and not kept.match_histograms
    # A bool is taken as given, with no measurement; without a corpus nothing is matched.
    given = TrainingData.for_fit(normal, corpus, cpu, 32, jpeg_quality=None, outlier_shape=None,
                                 match_histograms=False, seed=0)
    assert (given.match_histograms, given.intensity_separability) == (False, None)
    alone = TrainingData.for_fit(normal, None, cpu, 32, jpeg_quality=None, outlier_shape=None,
                                 match_histograms="auto", seed=0)
    assert (alone.match_histograms, alone.intensity_separability) == (False, None)
