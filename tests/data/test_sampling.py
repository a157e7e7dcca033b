import numpy as np
import pytest
import torch

from skad_transfer.data.sampling import EXACT_PERMUTATION_LIMIT, KeyedPermutation, permutation_prefix
from skad_transfer.training import seeded_generator
from skad_transfer.training.finetune import _epoch_plan


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 1000, 4097])
def test_keyed_permutation_is_a_bijection(n):
    values = KeyedPermutation(n, [11, 22, 33, 44, 55, 66])(np.arange(n))
    assert sorted(values.tolist()) == list(range(n))


def test_keyed_permutation_depends_on_its_keys():
    positions = np.arange(1000)
    a = KeyedPermutation(10**6, [1, 2, 3, 4, 5, 6])(positions)
    b = KeyedPermutation(10**6, [1, 2, 3, 4, 5, 7])(positions)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, KeyedPermutation(10**6, [1, 2, 3, 4, 5, 6])(positions))


def test_keyed_permutation_rejects_positions_outside_the_population():
    with pytest.raises(ValueError, match="positions"):
        KeyedPermutation(10, [1])(np.array([10]))


def test_small_populations_draw_what_randperm_draws():
    """Below the limit the draw (and the generator's state afterwards) is randperm's, so fits with
    ordinary corpora are unchanged."""
    n = 5000
    ours, theirs = seeded_generator("a", 1), seeded_generator("a", 1)
    np.testing.assert_array_equal(permutation_prefix(n, 300, ours), torch.randperm(n, generator=theirs)[:300])
    assert torch.equal(torch.rand(3, generator=ours), torch.rand(3, generator=theirs))


@pytest.mark.parametrize("n", [EXACT_PERMUTATION_LIMIT + 1, 10**9, 2**62])
def test_large_populations_draw_distinct_uniform_indices(n):
    k = 20_000
    draw = permutation_prefix(n, k, seeded_generator("b", 0)).numpy()
    assert draw.dtype == np.int64 and draw.shape == (k,)
    assert len(np.unique(draw)) == k
    assert draw.min() >= 0 and draw.max() < n
    # Uniform over the population: each tenth of it gets ~k/10 (chi-square, 9 dof, p ~ 1e-6 at 50).
    counts = np.bincount((draw // -(-n // 10)).astype(np.int64), minlength=10)
    expected = k / 10
    assert ((counts - expected) ** 2 / expected).sum() < 50
    np.testing.assert_array_equal(draw, permutation_prefix(n, k, seeded_generator("b", 0)).numpy())
    assert not np.array_equal(draw, permutation_prefix(n, k, seeded_generator("b", 1)).numpy())


def test_a_prefix_is_a_prefix():
    n = 3 * EXACT_PERMUTATION_LIMIT
    short = permutation_prefix(n, 100, seeded_generator("c"))
    long = permutation_prefix(n, 1000, seeded_generator("c"))
    assert torch.equal(short, long[:100])


def test_permutation_prefix_checks_k():
    with pytest.raises(ValueError, match="k: expected 0 <= k <= n=5"):
        permutation_prefix(5, 6, seeded_generator("d"))


def test_epoch_plan_is_unchanged_for_corpora_below_the_limit():
    """The plan every fit with an ordinary corpus made before large corpora were supported."""
    n_normal, n_outlier, half, seed, epoch = 300, 70, 32, 4, 2
    normal, outlier = _epoch_plan(n_normal, n_outlier, half, seed, epoch)
    generator = seeded_generator(seed, epoch)
    order = torch.randperm(n_normal, generator=generator)
    old = torch.cat([torch.randperm(n_outlier, generator=generator) for _ in range(5)])[:n_normal]
    assert torch.equal(torch.cat(normal), order)
    assert torch.equal(torch.cat(outlier), old)


def test_epoch_plan_over_a_billion_items_is_reproducible_and_fresh_each_epoch():
    n_outlier = 10**9
    _, first = _epoch_plan(500, n_outlier, 64, 0, 0)
    _, again = _epoch_plan(500, n_outlier, 64, 0, 0)
    _, later = _epoch_plan(500, n_outlier, 64, 0, 1)
    first, again, later = torch.cat(first), torch.cat(again), torch.cat(later)
    assert first.shape == (500,) and len(first.unique()) == 500 and int(first.max()) < n_outlier
    assert torch.equal(first, again)
    assert len(np.intersect1d(first.numpy(), later.numpy())) < 5
