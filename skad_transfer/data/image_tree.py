"""Image-folder trees in a directory or a zip: reading their files within size limits, finding their classes.

A tree is ``[prefix/][split/]<class>/<image>``. :class:`_DirSource` and
:class:`_ZipSource` list and read the files of a directory or of a zip
(a directory's symbolic links only inside its root; a file refused before it
is read when it is larger than :data:`MAX_IMAGE_BYTES`, a zip member also
when it expands more than :data:`MAX_COMPRESSION_RATIO`-fold), and
:func:`_resolve_tree` finds the level of the class folders. Decoding the
images is :mod:`skad_transfer.data.image_decode`'s business.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .decode_cache import _short_hash

__all__ = ["IMG_EXTENSIONS", "MAX_COMPRESSION_RATIO", "MAX_IMAGE_BYTES"]

#: File name endings (lower case) treated as images in image-folder trees.
IMG_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".ppm",
    ".pgm",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
)

#: Largest image file accepted in an image folder or zip (bytes; for a zip member, its uncompressed
#: size as the zip's directory states it). Checked before the file is read, so that a corrupt or
#: crafted file cannot make the loader allocate more; 64 MiB is far beyond any image of the
#: datasets this package reads (a 4,600 x 4,600 uncompressed RGB bitmap). Assign a larger value to
#: accept larger files (here or as ``skad_transfer.data.datasets.MAX_IMAGE_BYTES``, which forwards
#: to this one).
MAX_IMAGE_BYTES: int = 64 << 20
#: Largest compression ratio (uncompressed / compressed size) of a zip member of more than 1 MiB.
#: Image formats are already compressed and barely shrink in a zip; only a zip bomb expands a
#: hundredfold.
MAX_COMPRESSION_RATIO: int = 100
_RATIO_CHECK_BYTES = 1 << 20

# Folder names that mark a train/test split rather than a class; used only to
# give a helpful error when an un-split call meets a split tree.
_SPLIT_NAMES = frozenset({"train", "test", "val", "valid", "validation", "unlabeled", "extra"})


def _check_size(where: str, rel: str, size: int, compressed: int | None = None) -> None:
    """Refuse a file (or zip member) before reading it if it is larger than any image should be."""
    if size > MAX_IMAGE_BYTES:
        raise ValueError(
            f"{where}: {rel} is {size:,} bytes{' uncompressed' if compressed is not None else ''}, more than "
            f"MAX_IMAGE_BYTES={MAX_IMAGE_BYTES:,} (skad_transfer.data.datasets); it is refused before "
            f"reading it so that a corrupt or crafted file cannot exhaust memory"
        )
    if compressed is not None and size > _RATIO_CHECK_BYTES and size > MAX_COMPRESSION_RATIO * max(compressed, 1):
        raise ValueError(
            f"{where}: zip member {rel} expands {size / max(compressed, 1):.0f}-fold ({compressed:,} -> {size:,} "
            f"bytes), more than MAX_COMPRESSION_RATIO={MAX_COMPRESSION_RATIO}; image files barely compress, "
            f"so this looks like a zip bomb"
        )


class _DirSource:
    """The files of a directory tree, as POSIX paths relative to its root."""

    def __init__(self, root: Path) -> None:
        self.root = root  # resolved by _open_path: symlink targets are compared with it
        self.where = str(root)

    def list_files(self) -> list[str]:
        """Every file below the root, hidden folders skipped; refuses links that lead outside."""
        files = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            prefix = "" if rel == "." else rel + "/"
            # os.walk does not descend into linked folders: one pointing inside the root is walked
            # under its real name anyway; one pointing outside would silently lose its images.
            for d in dirnames:
                if os.path.islink(os.path.join(dirpath, d)):
                    self._inside(prefix + d)
            for f in filenames:
                if _is_image(prefix + f) and os.path.islink(os.path.join(dirpath, f)):
                    self._inside(prefix + f)
            files.extend(prefix + f for f in filenames)
        return files

    def _inside(self, rel: str) -> Path:
        """``root/rel``, refusing a symbolic link whose target lies outside the root."""
        path = self.root / rel
        if path.is_symlink():
            target = Path(os.path.realpath(path))
            if target != self.root and self.root not in target.parents:
                raise ValueError(
                    f"{self.where}: {rel} is a symbolic link to {target}, outside the folder; image folders "
                    f"are read only inside their root (copy the files in, or load the folder that holds them)"
                )
        return path

    def read(self, rel: str) -> bytes:
        """The bytes of a regular file of the tree, refused first if it is too large."""
        path = self._inside(rel)
        info = path.stat()
        if stat.S_ISREG(info.st_mode):  # a FIFO or device reports no meaningful size
            _check_size(self.where, rel, info.st_size)
        else:
            raise ValueError(f"{self.where}: {rel} is not a regular file")
        return path.read_bytes()

    def has(self, rel: str) -> bool:
        """Whether ``rel`` is a file of the tree."""
        return (self.root / rel).is_file()

    def stamp(self, rels: Sequence[str]) -> list[Any]:
        """A cache stamp of the root and of the size and modification time of every file in ``rels``."""
        # A directory's own mtime misses edits to files inside it, so stamp
        # every file that contributes to the result.
        out = []
        for rel in rels:
            st = (self.root / rel).stat()
            out.append((rel, st.st_size, st.st_mtime_ns))
        return [str(self.root), _short_hash(out)]


class _ZipSource:
    """The members of an open zip file (folders excluded)."""

    def __init__(self, path: Path, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.where = str(path)
        self._names = {i.filename for i in zf.infolist() if not i.is_dir()}

    def list_files(self) -> list[str]:
        """Every member that is not a folder, sorted."""
        return sorted(self._names)

    def read(self, rel: str) -> bytes:
        """The uncompressed bytes of a member, refused first if it is too large or expands too much."""
        # The sizes come from the zip's directory; zipfile never returns more bytes than
        # file_size, so checking it bounds the memory a member can take.
        info = self.zf.getinfo(rel)
        _check_size(self.where, rel, info.file_size, info.compress_size)
        return self.zf.read(info)

    def has(self, rel: str) -> bool:
        """Whether ``rel`` is a member of the zip."""
        return rel in self._names


def _is_image(rel: str) -> bool:
    """Whether ``rel`` names an image file outside hidden folders and ``__MACOSX``."""
    parts = rel.split("/")
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return rel.lower().endswith(IMG_EXTENSIONS)


def _parent(prefix: str) -> str:
    """``"a/b/"`` -> ``"a/"``; ``"a/"`` -> ``""``."""
    parts = prefix.rstrip("/").split("/")[:-1] if prefix else []
    return "/".join(parts) + "/" if parts else ""


def _describe_dirs(files: Sequence[str], depth: int = 3, limit: int = 12) -> str:
    """The first folders (or, with none, top-level files) of ``files``, for an error message."""
    seen: list[str] = []
    for rel in files:
        parts = rel.split("/")[:-1]
        for d in range(1, min(depth, len(parts)) + 1):
            name = "/".join(parts[:d]) + "/"
            if name not in seen:
                seen.append(name)
        if len(seen) > limit:
            break
    if not seen:
        top = sorted({rel.split("/")[0] for rel in files})[:limit]
        return "files " + ", ".join(repr(t) for t in top) if top else "nothing"
    more = ", ..." if len(seen) > limit else ""
    return "folders " + ", ".join(repr(s) for s in seen[:limit]) + more


def _resolve_tree(
    files: Sequence[str], split: str | None, *, auto_root: bool, where: str
) -> tuple[str, dict[str, list[str]]]:
    """Find the ``[prefix/][split/]<class>/<file>`` level of a list of paths.

    Returns the prefix (``""`` or ending in ``"/"``, including the split
    folder) and a mapping from class folder name to its sorted image paths.
    """
    images = [f for f in files if _is_image(f)]
    expected = "<class>/<image>" if split is None else f"<...>/{split}/<class>/<image>"
    if not images:
        raise ValueError(
            f"{where}: expected an image-folder tree {expected!r} with image files "
            f"({', '.join(IMG_EXTENSIONS)}), but found no images; found {_describe_dirs(files)}"
        )
    parts_list = [rel.split("/") for rel in images]
    entries: list[tuple[str, str]] = []
    if split is not None:
        by_prefix: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for rel, parts in zip(images, parts_list):
            for i in range(len(parts) - 2):
                if parts[i] == split:
                    by_prefix.setdefault(tuple(parts[: i + 1]), []).append((rel, parts[i + 1]))
                    break
        if not by_prefix:
            raise ValueError(
                f"{where}: expected an image-folder tree {expected!r} for split={split!r}, "
                f"but no folder named {split!r} with class folders of images was found; "
                f"found {_describe_dirs(images)}"
            )
        if len(by_prefix) > 1:
            found = ", ".join(repr("/".join(p) + "/") for p in sorted(by_prefix))
            raise ValueError(f"{where}: split={split!r} is ambiguous, it matches {found}")
        (prefix_parts, entries), = by_prefix.items()
    else:
        prefix_parts = ()
        if auto_root:
            # Strip folders shared by every image (e.g. a zip's top folder),
            # but always keep one folder level as the class.
            depth = min(len(p) for p in parts_list) - 2
            common: list[str] = []
            for d in range(max(depth, 0)):
                names = {p[d] for p in parts_list}
                if len(names) != 1:
                    break
                common.append(names.pop())
            prefix_parts = tuple(common)
        k = len(prefix_parts)
        entries = [(rel, p[k]) for rel, p in zip(images, parts_list) if len(p) >= k + 2]
        if not entries:
            raise ValueError(
                f"{where}: expected an image-folder tree {expected!r}, but the images are "
                f"not inside class folders; found {_describe_dirs(images)}"
            )
        names = {c for _, c in entries}
        if names <= _SPLIT_NAMES and all(len(rel.split("/")) >= k + 3 for rel, _ in entries):
            raise ValueError(
                f"{where}: the top-level folders {sorted(names)} look like dataset splits, "
                f"not classes; pass split= (one of {sorted(names)})"
            )
    groups: dict[str, list[str]] = {}
    for rel, cls in entries:
        groups.setdefault(cls, []).append(rel)
    for rels in groups.values():
        rels.sort()
    prefix = "/".join(prefix_parts) + "/" if prefix_parts else ""
    return prefix, dict(sorted(groups.items()))
