"""Byte-reproducible .tar and .tar.gz archives of a bundle, for carrying it to an air-gapped host."""
from __future__ import annotations

import gzip
import io
from typing import TYPE_CHECKING, Dict, Iterable, Tuple

if TYPE_CHECKING:
    import tarfile

# A fixed timestamp (2000-01-01T00:00:00Z): archives of the same bundle are the same bytes, any day.
EPOCH = 946684800
# tarfile's values (tests/test_ansible.py compares them), written here: importing tarfile (with grp
# and pwd) is ~1 ms of a one-host build, which needs it only for a member name over 100 bytes.
DIRTYPE, REGTYPE = b"5", b"0"
BLOCKSIZE = 512
RECORDSIZE = 20 * BLOCKSIZE


def _dirs(paths: Iterable[str]) -> Iterable[str]:
    seen = set()
    for path in paths:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            seen.add("/".join(parts[:i]))
    return sorted(seen)


def tar(top: str, files: Dict[str, Tuple[bytes, int]]) -> bytes:
    """A plain ustar archive of `files` (path → (bytes, mode)) under the directory `top`: sorted
    members, fixed mtime, owner 0:0 with no names. The bytes tarfile writes (tests compare them),
    built without its per-member objects: a 1,000-host build writes 1,000 of these."""
    chunks = [_header(f"{top}/{directory}".rstrip("/") + "/", 0, 0o755, DIRTYPE)
              for directory in [""] + list(_dirs(files))]
    for path in sorted(files):
        data, mode = files[path]
        chunks += [_header(f"{top}/{path}", len(data), mode, REGTYPE), data,
                   b"\0" * (-len(data) % BLOCKSIZE)]
    chunks.append(b"\0" * (2 * BLOCKSIZE))   # end of archive, then padding to a whole record
    size = sum(len(c) for c in chunks)
    chunks.append(b"\0" * (-size % RECORDSIZE))
    return b"".join(chunks)


# A ustar header with owner 0:0, no user or group name, mtime EPOCH: its fields after the name, in
# order (mode, uid, gid, size, mtime, checksum, type, link name, magic+version, uname, gname,
# devmajor, devminor, prefix, padding). tarfile writes the same bytes (tests/test_ansible.py).
_TAIL = b"\0" * 100 + b"ustar\x0000" + b"\0" * (32 + 32 + 8 + 8 + 155 + 12)
_CHECKSUM_BLANK = b" " * 8


def _header(name: str, size: int, mode: int, kind: bytes) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > 100:   # needs ustar's prefix field: tarfile splits the name as it must
        import tarfile

        info = tarfile.TarInfo(name)
        info.type, info.size, info.mode = kind, size, mode
        _normalize(info)
        return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    head = b"".join((raw.ljust(100, b"\0"), b"%07o\0" % mode, b"0000000\0", b"0000000\0",
                     b"%011o\0" % size, b"%011o\0" % EPOCH))
    checksum = sum(head) + sum(_CHECKSUM_BLANK) + kind[0] + sum(_TAIL)
    return head + b"%06o\0 " % checksum + kind + _TAIL


def tar_gz(top: str, files: Dict[str, Tuple[bytes, int]]) -> bytes:
    """`tar` gzip'd, with no gzip file name or time."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(tar(top, files))
    return out.getvalue()


def _normalize(info: tarfile.TarInfo) -> None:
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
