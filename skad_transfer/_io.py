"""Atomic file writes: the one way the package writes a file that someone else may read.

Every file the package produces (theta0 checkpoints, downloads, decode-cache entries, result-store
runs, report tables and figures, the demo's chart) is written under a temporary name in the target
folder and moved into place with :func:`os.replace`. A reader therefore sees either the old file or
the complete new one, never a truncated one, even if the writer is interrupted.

The temporary file is created with :func:`os.open` and mode ``0o666``, so the process's umask (and a
folder's default ACL) applies exactly as it would to a plain ``open(path, "w")``, and the file keeps
that mode. Nothing here reads or changes the umask, which is process-wide state that other threads
may be using (``tempfile.mkstemp`` creates ``0o600`` files, and fixing that up afterwards needs the
umask).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write", "atomic_write_text", "save_figure"]

_TMP_SUFFIX = ".tmp"


def _create_temporary(final: Path) -> tuple[Path, int]:
    """An empty temporary file next to ``final`` and the permission bits a plain ``open`` gives it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        # A leading dot keeps the temporary file out of globs such as "*.json" and "<group>-*".
        candidate = final.parent / f".{final.name}.{secrets.token_hex(4)}{_TMP_SUFFIX}"
        try:
            fd = os.open(candidate, flags, 0o666)
        except FileExistsError:
            continue
        try:
            # The kernel applied the umask (and any default ACL): the mode the file must end with.
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        if mode & 0o600 != 0o600:
            # An umask that removes the owner's read/write would stop the writer from reopening
            # the file by path; the final mode is restored before the rename.
            os.chmod(candidate, mode | 0o600)
        return candidate, mode
    raise FileExistsError(f"could not create a temporary file next to {final}")


@contextmanager
def atomic_path(final, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; move it onto ``final`` when the block succeeds.

    Parameters
    ----------
    final : str or path-like
        The file to (re)place. Its folder must exist.
    fsync : bool, default=False
        Flush the temporary file to disk before the rename (for records that must survive a crash
        of the machine, not only of the process).

    Yields
    ------
    tmp : pathlib.Path
        An empty file, created with the permissions a plain ``open`` would give, that the block
        fills (by path: ``np.save``, ``open_memmap``, ``savefig``...). On an exception (including
        ``KeyboardInterrupt``) it is removed and ``final`` is left untouched.
    """
    final = Path(final)
    tmp, mode = _create_temporary(final)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        if mode & 0o600 != 0o600:
            os.chmod(tmp, mode)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(final, write: Callable[[Any], Any], mode: str = "wb", *, fsync: bool = False) -> None:
    """Write ``final`` atomically through ``write(handle)``.

    Parameters
    ----------
    final : str or path-like
        The file to (re)place. Its folder must exist.
    write : callable
        Called once with the open temporary file (``torch.save(obj, handle)``, ``handle.write(...)``).
    mode : {"wb", "w"}, default="wb"
        Binary or text.
    fsync : bool, default=False
        See :func:`atomic_path`.
    """
    with atomic_path(final, fsync=fsync) as tmp:
        with open(tmp, mode) as handle:
            write(handle)


def atomic_write_text(final, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``final`` atomically; returns ``final`` as a path."""
    final = Path(final)
    atomic_write(final, lambda handle: handle.write(text.encode("utf-8")), "wb", fsync=fsync)
    return final


def save_figure(figure, final) -> Path:
    """``figure.savefig`` to ``final`` atomically, in the format its suffix names (else PNG).

    matplotlib infers the format from a file name, and the temporary name ends in ``.tmp``, so the
    format is passed explicitly.
    """
    final = Path(final)
    fmt = final.suffix[1:].lower() or "png"
    atomic_write(final, lambda handle: figure.savefig(handle, format=fmt), "wb")
    return final
