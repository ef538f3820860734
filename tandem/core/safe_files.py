"""Regular files only: list and open what a clinic delivered, never what a link points to.

A folder Tandem reads from (an inbox, a folder given to ``tandem ingest``) may hold a
symbolic link (``inbox/northside/passwd.csv -> /etc/passwd``), a named pipe (its open
blocks for ever), a device or a socket. None of these is a delivery:

* :func:`list_files` walks a folder through directory descriptors opened with
  ``O_NOFOLLOW`` (a symlinked sub-folder is not entered, not even when it is swapped in
  during the walk) and sorts every entry into regular files and refusals with a reason;
* :func:`read_regular` opens one file with ``O_NOFOLLOW | O_NONBLOCK`` (a link fails the
  open, a FIFO does not block it) and reads it only if ``fstat`` says it is a regular file;
* :func:`refusal` says why an entry (by ``lstat``) is not a regular file, or None.

The reasons name the kind of entry, never its target or contents.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
LINK_REASON = "is a symbolic link; Tandem reads only files placed in the folder itself"


class FileRefused(Exception):
    """An entry that is not a regular file (or cannot be opened as one)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{os.fspath(path)} {reason}")
        self.path = Path(path)
        self.reason = reason


def kind_reason(mode: int) -> str | None:
    """Why an entry of this ``st_mode`` is refused; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return LINK_REASON
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    return "is not a regular file"


def refusal(path: str | os.PathLike) -> str | None:
    """Why ``path`` itself (not what it may point to) is not a regular file; None if it is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be examined ({errno.errorcode.get(exc.errno or 0, exc.errno)})"
    return kind_reason(st.st_mode)


@dataclass
class Listing:
    """Regular files under a folder (sorted by path) and the entries refused."""

    files: list[Path] = field(default_factory=list)
    refused: list[FileRefused] = field(default_factory=list)


def list_files(root: str | os.PathLike, *, max_depth: int = 16,
               skip_hidden: bool = True) -> Listing:
    """Every regular file under ``root`` and every refused entry, without following links.

    ``root`` itself must be a folder, not a link to one (:class:`FileRefused` otherwise).
    Hidden entries (a leading dot) are skipped silently, as every writer's temporary files
    are."""
    root = Path(root)
    try:
        top = os.open(root, _OPEN_DIR)
    except OSError as exc:
        reason = ("is a symbolic link, not a folder; name the folder itself"
                  if exc.errno == errno.ELOOP else "is not a folder"
                  if exc.errno == errno.ENOTDIR else
                  f"cannot be opened ({errno.errorcode.get(exc.errno or 0, exc.errno)})")
        raise FileRefused(root, reason) from None
    out = Listing()
    try:
        _walk(top, root, 0, out, max_depth, skip_hidden)
    finally:
        os.close(top)
    out.files.sort()
    out.refused.sort(key=lambda r: r.path)
    return out


def _walk(dir_fd: int, where: Path, depth: int, out: Listing, max_depth: int,
          skip_hidden: bool) -> None:
    with os.scandir(dir_fd) as it:
        names = sorted(e.name for e in it)
    for name in names:
        if skip_hidden and name.startswith("."):
            continue
        path = where / name
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue  # gone since the listing: nothing to refuse
        if stat.S_ISDIR(st.st_mode):
            if depth + 1 > max_depth:
                out.refused.append(FileRefused(path, f"is nested deeper than {max_depth} "
                                                     f"folders"))
                continue
            try:
                sub = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
            except OSError as exc:
                why = (LINK_REASON if exc.errno == errno.ELOOP
                       else "is a folder that cannot be opened")
                out.refused.append(FileRefused(path, why))
                continue
            try:
                _walk(sub, path, depth + 1, out, max_depth, skip_hidden)
            finally:
                os.close(sub)
            continue
        why = kind_reason(st.st_mode)
        if why:
            out.refused.append(FileRefused(path, why))
        else:
            out.files.append(path)


def open_regular(path: str | os.PathLike) -> tuple[int, os.stat_result]:
    """A descriptor on ``path`` and its ``fstat``, if ``path`` is itself a regular file.

    The last component is opened with ``O_NOFOLLOW | O_NONBLOCK`` (a link fails, a FIFO
    does not block) and checked with ``fstat``; the caller closes the descriptor."""
    try:
        fd = os.open(path, _OPEN_FILE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileRefused(path, LINK_REASON) from None
        if exc.errno in (errno.ENXIO, errno.ENODEV):
            raise FileRefused(path, "is not a regular file") from None
        if exc.errno == errno.ENOENT:
            raise FileRefused(path, "does not exist") from None
        raise FileRefused(path, f"cannot be opened "
                                f"({errno.errorcode.get(exc.errno or 0, exc.errno)})") from None
    try:
        st = os.fstat(fd)
        why = kind_reason(st.st_mode)
        if why:
            raise FileRefused(path, why)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str | os.PathLike) -> bytes:
    """The bytes of ``path`` if it is itself a regular file, else :class:`FileRefused`."""
    fd, st = open_regular(path)
    try:
        chunks = []
        while True:
            piece = os.read(fd, max(1 << 20, min(st.st_size + 1, 64 << 20)))
            if not piece:
                break
            chunks.append(piece)
        return b"".join(chunks)
    finally:
        os.close(fd)
