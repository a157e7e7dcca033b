"""One registry for every name -> object table of the package: weights, backbones, corpora, losses,
regularizers, benchmark methods.

A :class:`Registry` is a read-only mapping (``name in registry``, ``registry[name]``, ``set(registry)``,
``.items()`` in registration order) with :meth:`~Registry.register` (a taken name is an error unless
``overwrite=True``), :meth:`~Registry.unregister`, :meth:`~Registry.names` (sorted) and entries built
on first use (:meth:`~Registry.register_lazy`). An unknown name raises :class:`UnknownNameError`, both
a ``KeyError`` and a ``ValueError``, whose message names the registry, the name and the registered
choices (each registry may word it its own way: ``unknown=``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Iterator

__all__ = ["Registry", "UnknownNameError"]


class UnknownNameError(KeyError, ValueError):
    """A name that is not registered: a ``KeyError`` for mapping code, a ``ValueError`` for callers
    that validate a parameter; its message is shown as written (not quoted, as a ``KeyError``'s is)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class _Lazy:
    """An entry built on first lookup (so that importing the package builds nothing it may not need)."""

    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory

    def __repr__(self) -> str:
        return f"<built on first use by {getattr(self.factory, '__qualname__', self.factory)!r}>"


class Registry(Mapping):
    """A table of named entries.

    Parameters
    ----------
    kind : str
        What the entries are (``"weights"``, ``"backbone"``, ...), as the messages name them.
    entries : mapping, optional
        Entries to start with, in order.
    unknown : str, optional
        The message of an unknown name, formatted with ``kind``, ``name`` and ``choices`` (the sorted
        names); default ``"{kind}: unknown name {name!r}; registered names are {choices}"``.
    duplicate : str, optional
        The message of registering a taken name without ``overwrite``, formatted with ``kind`` and
        ``name``; default ``"{kind} {name!r} is already registered; pass overwrite=True"``.
    store : callable, optional
        Returns the dict that holds the entries, looked up at every use: for a module that keeps its
        table under a name of its own (``_REGISTRY``), which a test may swap for a copy.
    """

    def __init__(self, kind: str, entries: Mapping[str, Any] | None = None, *, unknown: str | None = None,
                 duplicate: str | None = None, store: Callable[[], dict] | None = None):
        self.kind = kind
        self._unknown = unknown or "{kind}: unknown name {name!r}; registered names are {choices}"
        self._duplicate = duplicate or "{kind} {name!r} is already registered; pass overwrite=True"
        self._table: dict = {}
        self._store_of = store
        for name, entry in (entries or {}).items():
            self.register(name, entry)

    def _store(self) -> dict:
        return self._table if self._store_of is None else self._store_of()

    # ------------------------------------------------------------------ changing it
    def register(self, name: str, entry, *, overwrite: bool = False):
        """Add ``entry`` as ``name``; returns ``entry``. A taken name is a ValueError unless ``overwrite``."""
        table = self._store()
        if name in table and not overwrite:
            raise ValueError(self._duplicate.format(kind=self.kind, name=name))
        table[name] = entry
        return entry

    def register_lazy(self, name: str, factory: Callable[[], Any], *, overwrite: bool = False) -> None:
        """Add ``name`` as ``factory()``, called on the first lookup (and kept)."""
        self.register(name, _Lazy(factory), overwrite=overwrite)

    def unregister(self, name: str) -> None:
        """Forget ``name`` (no error if it is unknown)."""
        self._store().pop(name, None)

    # ------------------------------------------------------------------ reading it
    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._store())

    def error(self, name) -> UnknownNameError:
        """The error for ``name`` not being registered (for a caller that finds it out itself)."""
        return UnknownNameError(self._unknown.format(kind=self.kind, name=name, choices=self.names()))

    def __getitem__(self, name):
        table = self._store()
        try:
            entry = table[name]
        except KeyError:
            raise self.error(name) from None
        if isinstance(entry, _Lazy):
            entry = table[name] = entry.factory()
        return entry

    def __contains__(self, name) -> bool:
        return name in self._store()  # an unhashable name is a TypeError, as for a dict

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._store()))  # in registration order; a snapshot, so entries may be added meanwhile

    def __len__(self) -> int:
        return len(self._store())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._store())})"
