"""The package version (one place: the package, its metadata and pickles read it here)."""

__version__ = "0.1.0"
