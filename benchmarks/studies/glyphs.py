"""A development stand-in for small grayscale character datasets: rendered, jittered letters.

The renderer moved into the package with the development suite
(:func:`skad_transfer.bench.devsuite.make_glyphs`, unchanged: the same seed gives the same images);
this name stays for the commands in ``docs/design.md`` (importable as ``glyphs`` with
``benchmarks/studies/`` on ``sys.path``; not a script, so no bootstrap).

    from glyphs import make_glyphs
    X, y = make_glyphs(90, letters="ACEFHKLPTX", random_state=0)   # (900, 8, 8, 1) uint8
"""

from skad_transfer.bench.devsuite import make_glyphs

__all__ = ["make_glyphs"]
