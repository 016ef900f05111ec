"""Byte-reproducible .tar and .tar.gz archives of a bundle, for carrying it to an air-gapped host."""
from __future__ import annotations

import gzip
import io
import tarfile
from typing import Dict, Iterable, Tuple

# A fixed timestamp (2000-01-01T00:00:00Z): archives of the same bundle are the same bytes, any day.
EPOCH = 946684800


def _dirs(paths: Iterable[str]) -> Iterable[str]:
    seen = set()
    for path in paths:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            seen.add("/".join(parts[:i]))
    return sorted(seen)


def tar(top: str, files: Dict[str, Tuple[bytes, int]]) -> bytes:
    """A plain ustar archive of `files` (path → (bytes, mode)) under the directory `top`: sorted
    members, fixed mtime, owner 0:0 with no names. The bytes tarfile writes, without its per-member
    file-object overhead (a 1,000-host build writes 1,000 of these)."""
    chunks = []
    for directory in [""] + list(_dirs(files)):
        info = tarfile.TarInfo(f"{top}/{directory}".rstrip("/"))
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        _normalize(info)
        chunks.append(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))
    for path in sorted(files):
        data, mode = files[path]
        info = tarfile.TarInfo(f"{top}/{path}")
        info.size, info.mode = len(data), mode
        _normalize(info)
        chunks += [info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"), data,
                   b"\0" * (-len(data) % tarfile.BLOCKSIZE)]
    chunks.append(b"\0" * (2 * tarfile.BLOCKSIZE))   # end of archive, then padding to a whole record
    size = sum(len(c) for c in chunks)
    chunks.append(b"\0" * (-size % tarfile.RECORDSIZE))
    return b"".join(chunks)


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
