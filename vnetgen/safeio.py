"""Reading files vnetgen is handed: regular files only, within a size limit, never a link out of a directory."""
from __future__ import annotations

import os
import stat
from typing import Optional

MiB = 1 << 20
# Documented in README.md ("Limits") and docs/audit.md; generous for real inputs.
PROFILE_LIMIT = 16 * MiB
MANIFEST_LIMIT = 16 * MiB
BUNDLE_FILE_LIMIT = 64 * MiB   # a bundle file read back by `build --check`
CAPTURE_LIMIT = 64 * MiB       # one file of an audit capture

_CHUNK = 1 << 16


class UnsafeInput(Exception):
    """A file that is not a regular file, is too large, or lies (through a link) outside its directory.

    str() is "PATH: reason"; `reason` alone suits a message that names the file already.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def inside(path: str, root: str, real_root: Optional[str] = None) -> bool:
    """True when `path`, with every link resolved, is `root` or lies below it (also resolved;
    `real_root`: the caller resolved it already, once for many files)."""
    real, base = os.path.realpath(path), real_root or os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def read_bounded(path: str, limit: int, what: str, within: Optional[str] = None, follow: bool = True,
                 real_within: Optional[str] = None) -> bytes:
    """The bytes of `path`, a regular file of at most `limit` bytes, or UnsafeInput naming it.

    FIFOs and devices are refused before anything is read (opened non-blocking, so a FIFO with no
    writer cannot hang us); a file that grows past `limit` while read is refused too. `within`: the
    file, links resolved, must lie inside that directory. `follow=False`: the last component may not
    be a symbolic link at all. `real_within`: `within` resolved by the caller (os.path.realpath).
    """
    if within is not None and not inside(path, within, real_within):
        raise UnsafeInput(path, f"{what} leads outside {within} (a symbolic link?); refusing to read it")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow and os.path.islink(path):
            raise UnsafeInput(path, f"{what} is a symbolic link; refusing to follow it") from None
        raise UnsafeInput(path, f"cannot read {what}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeInput(path, f"{what} is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise UnsafeInput(path, f"{what} is {info.st_size} bytes, more than the limit of {_size(limit)}")
        # A regular file: O_NONBLOCK (there for a FIFO's open) changes nothing about its reads.
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UnsafeInput(path, f"{what} is more than the limit of {_size(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        raise UnsafeInput(path, f"cannot read {what}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit % MiB == 0 else f"{limit} bytes"


def excerpt(text: str, limit: int = 40) -> str:
    """A short, escaped piece of a file's content, fit to quote in a one-line error."""
    shown = text[:limit].encode("unicode_escape", "backslashreplace").decode("ascii")
    return f"'{shown}'" if len(text) <= limit else f"'{shown}...'"
