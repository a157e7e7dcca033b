"""Download failures of the dataset loaders: :class:`DownloadError`, and the words it says them in.

torchvision downloads through urllib, whose failures name neither the URL nor
the file (``<urlopen error [Errno -2] Name or service not known>``).
:func:`_is_network_error` tells such a failure from a local one (a full disk,
a read-only folder), which keeps its own message; :func:`_network_reason`
and :func:`_by_hand` word the :class:`DownloadError` that replaces it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DownloadError"]


class DownloadError(OSError):
    """A download that failed: the message names the URL, the file and where to put it by hand.

    An :class:`OSError` (the command line reports it as one line, exit status 2) but not a
    ``FileNotFoundError``: the files may well be missing, but "fetch them with download=True" is
    exactly what failed.

    Attributes
    ----------
    url : str
        What was being fetched.
    path : pathlib.Path
        Where the file belongs: put it there by hand and the loader finds it.
    """

    def __init__(self, message: str, *, url: str | None = None, path: Path | None = None) -> None:
        super().__init__(message)
        self.url, self.path = url, path


def _is_network_error(error: BaseException) -> bool:
    """Whether ``error`` says that the network, not a local file, failed the download.

    urllib wraps failures to connect (no DNS, no route, refused, TLS) in ``URLError`` and HTTP
    statuses in ``HTTPError``; a failure while reading is a ``TimeoutError``/``ConnectionError``, an
    ``ssl.SSLError`` or an ``http.client.HTTPException`` (``IncompleteRead``). A local
    ``PermissionError`` or a full disk is none of these: it keeps its own message, which names the file.
    """
    import errno
    import http.client
    import socket
    import ssl
    import urllib.error

    if isinstance(error, (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, socket.gaierror,
                          socket.herror, ssl.SSLError, http.client.HTTPException)):
        return True
    unreachable = {getattr(errno, n) for n in ("ENETUNREACH", "EHOSTUNREACH", "ENETDOWN", "EHOSTDOWN", "ENONET")
                   if hasattr(errno, n)}
    return isinstance(error, OSError) and error.errno in unreachable


def _network_reason(error: BaseException) -> str:
    import urllib.error

    # URLError's str is "<urlopen error [Errno -2] Name or service not known>": keep the reason only.
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        reason = error.reason
        if isinstance(reason, BaseException):
            return str(reason) or type(reason).__name__
        return str(reason)
    return str(error) or type(error).__name__


def _by_hand(url: str, root: Path, archive: str, extracted: str | None) -> str:
    """How to put in place by hand the file that torchvision would have downloaded."""
    fetch = f"fetch {archive} from {url} on a machine with a network and"
    if extracted is None:
        return f"{fetch} put it into {root} (as {root / archive})"
    return (f"{fetch} put it into {root} (a rerun with download=True, the commands' --download, then checks its MD5 "
            f"and extracts it without the network), or extract it there so that {root / extracted}/ exists")
