"""Index draws whose memory does not grow with the population: the first ``k`` items of a random
permutation of ``range(n)``, for ``n`` up to 2**62.

An outlier-exposure corpus may hold far more items than a fit ever looks at (the OE literature uses
tens of millions of images; a loader can synthesise 10**9). A fit draws only ``batch_size // 2``
indices per step, but ``torch.randperm(n)`` materialises all ``n`` (8 bytes each: 8 GB at 10**9).
:func:`permutation_prefix` returns the same kind of draw, distinct indices uniformly ordered, in
memory and time proportional to ``k``:

* up to :data:`EXACT_PERMUTATION_LIMIT` items it is ``torch.randperm(n, generator=generator)[:k]``,
  the draw every fit made before corpora grew large (so results with such corpora are unchanged);
* above it, :class:`KeyedPermutation`, a Feistel network keyed by draws from ``generator``, is
  evaluated at positions ``0 .. k-1`` only (cycle-walking keeps it a bijection of ``range(n)``).

Both depend on ``generator`` alone, so an epoch's draw stays a function of ``(seed, epoch)`` and a
resumed fit redraws exactly what it drew before.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["EXACT_PERMUTATION_LIMIT", "KeyedPermutation", "permutation_prefix"]

#: Populations up to this size are drawn with ``torch.randperm`` (8 MB of int64 at the limit).
EXACT_PERMUTATION_LIMIT = 2**20

_MASK64 = np.uint64(2**64 - 1)


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective, well-mixing hash of uint64 values (wrapping arithmetic)."""
    z = values.copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


class KeyedPermutation:
    """A pseudo-random permutation of ``range(n)``, evaluated at any positions without storing it.

    A balanced Feistel network on ``2 * half_bits`` bits (the smallest even width whose range holds
    ``n``) with splitmix64 round functions is a bijection of ``range(4**half_bits)`` for any keys;
    values that land at or above ``n`` are sent through the network again (cycle-walking), which
    makes it a bijection of ``range(n)``. Since ``4**half_bits < 4 * n``, that takes fewer than four
    passes on average.

    Parameters
    ----------
    n : int
        The population size, at least 1.
    keys : sequence of int
        One key per Feistel round (six rounds make the order indistinguishable from random for
        sampling purposes; any number works and stays a bijection).
    """

    def __init__(self, n: int, keys):
        if n < 1:
            raise ValueError(f"n: expected a population of at least 1, got {n}")
        self.n = int(n)
        self.keys = [np.uint64(int(k) & (2**64 - 1)) for k in keys]
        self.half_bits = max(1, (max(1, (self.n - 1).bit_length()) + 1) // 2)

    def _network(self, x: np.ndarray) -> np.ndarray:
        shift = np.uint64(self.half_bits)
        mask = np.uint64(2**self.half_bits - 1)
        left, right = x >> shift, x & mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & mask)
        return (left << shift) | right

    def __call__(self, positions) -> np.ndarray:
        """The permutation's values at ``positions`` (each in ``range(n)``), as int64."""
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= self.n):
            raise ValueError(f"positions: expected values in [0, {self.n}), got [{positions.min()}, "
                             f"{positions.max()}]")
        out = self._network(positions.astype(np.uint64))
        outside = np.flatnonzero(out >= np.uint64(self.n))
        while outside.size:
            out[outside] = self._network(out[outside])
            outside = outside[out[outside] >= np.uint64(self.n)]
        return out.astype(np.int64)


def permutation_prefix(n: int, k: int, generator: torch.Generator, *, rounds: int = 6) -> torch.Tensor:
    """The first ``k`` items of a random permutation of ``range(n)`` drawn with ``generator``.

    ``k`` distinct int64 indices in random order, in memory and time proportional to ``k``
    (see the module docstring for how, below and above :data:`EXACT_PERMUTATION_LIMIT`).

    Parameters
    ----------
    n : int
        Population size, at least 1.
    k : int
        How many to draw, 0 <= k <= n.
    generator : torch.Generator
        A CPU generator; the draw is a function of its state.
    rounds : int, default=6
        Feistel rounds above the limit.

    Returns
    -------
    indices : torch.Tensor of shape (k,), int64
    """
    if not 0 <= k <= n:
        raise ValueError(f"k: expected 0 <= k <= n={n}, got {k}")
    if n <= EXACT_PERMUTATION_LIMIT:
        return torch.randperm(n, generator=generator)[:k]
    keys = torch.randint(0, 2**62, (rounds,), generator=generator, dtype=torch.int64).tolist()
    return torch.from_numpy(KeyedPermutation(n, keys)(np.arange(k, dtype=np.int64)))
