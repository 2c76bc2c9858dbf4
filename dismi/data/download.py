"""Fetch a large file over http(s) or file://, resumably, and accept it only if size and SHA-256 match.

Bytes land in `<dest>.part` beside the destination. A failed or interrupted run keeps them there, and the
next run asks the server for the rest with an HTTP Range request; only a verified file is renamed to
`dest`, so nothing at `dest` ever looks complete without being so.

`fetch_cached` keeps the verified file in a per-user cache outside the repository (DISMI_CACHE, else
$XDG_CACHE_HOME/dismi, else ~/.cache/dismi; as pooch and TFDS do) and links (else copies) it to the
destination, so a rerun of the download stage after a code edit takes seconds and no network. A
sidecar `<file>.verified` records the hash it was verified against with the file's size and mtime;
while they match, the file is not hashed again.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from dismi.util.errors import DismiError
from dismi.util.files import file_sha256, link_or_copy, write_text_atomic
from dismi.util.progress import bar as progress_bar

CACHE_ENV = "DISMI_CACHE"

_CHUNK = 1 << 20
# Server answers worth retrying; any other HTTP error (404, 403, ...) will not fix itself.
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


class _Transient(Exception):
    """A failure a later try may not meet: connection refused or cut, timeout, server overloaded."""


class _StalePart(Exception):
    """The server has no bytes past the partial file's end, so those bytes are not a prefix of its file."""


def download(
    url: str,
    dest: str | Path,
    *,
    size: int,
    sha256: str,
    retries: int = 3,
    backoff: float = 0.5,
    timeout: float = 10.0,
    progress: bool = True,
    ways_out: str = "check the URL and the network",
) -> Path:
    """Stream `url` to `dest`, resuming `<dest>.part`; verify `size` bytes and `sha256`, then rename into place.

    Retries transient failures up to `retries` times in a row, sleeping backoff, 2*backoff, ...; a try
    that brought new bytes resets the count. `timeout` bounds the connect and every read, so an offline
    machine fails within seconds. Raises DismiError with one line on failure; when the URL cannot be
    reached that line ends with `ways_out`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if have == size:
            break
        if have > size:
            part.unlink()  # longer than the file we want, so not a prefix of it
            continue
        try:
            _fetch(url, part, have, size, timeout, progress)
        except _StalePart:
            part.unlink()
        except _Transient as e:
            grew = part.exists() and part.stat().st_size > have
            failures = 0 if grew else failures + 1
            if failures > retries:
                raise DismiError(_give_up(url, part, size, e, ways_out)) from None
            time.sleep(backoff * 2 ** max(0, failures - 1))
    got = file_sha256(part)
    if got != sha256:
        part.unlink()
        raise DismiError(
            f"{url} gave a file with SHA-256 {got}, expected {sha256}: the partial file was deleted; "
            f"rerun to download it again, or check the URL"
        )
    os.replace(part, dest)
    return dest


def cache_dir() -> Path:
    """The per-user download cache: DISMI_CACHE, else $XDG_CACHE_HOME/dismi, else ~/.cache/dismi."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dismi"


def _verified(path: Path, size: int, sha256: str) -> bool:
    """Whether `path` is the file with `size` bytes and `sha256`: the sidecar's word while the file's
    size and mtime are what it recorded, else a full hash (which then writes the sidecar)."""
    sidecar = path.with_name(path.name + ".verified")
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    stamp = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        if json.loads(sidecar.read_text()) == stamp and st.st_size == size:
            return True
    except (OSError, ValueError):
        pass
    if st.st_size != size or file_sha256(path) != sha256:
        return False
    write_text_atomic(sidecar, json.dumps(stamp) + "\n")
    return True


def fetch_cached(
    url: str, dest: str | Path, *, size: int, sha256: str, name: str, cache: Path | None = None, **kwargs
) -> tuple[Path, str]:
    """`dest` as a link (else a copy) of the verified `<cache>/<name>`, downloaded there first (with
    `download`'s resume and checks; `kwargs` are its options) when missing or not the expected file.
    -> (the cached file, how `dest` was made: "linked" or "copied")."""
    cache = cache or cache_dir()
    cached = cache / name
    if not _verified(cached, size, sha256):
        cached.unlink(missing_ok=True)  # not the file we want (a partial download is <name>.part)
        download(url, cached, size=size, sha256=sha256, **kwargs)
        st = cached.stat()  # verified by download: record it so the next run does not hash it again
        write_text_atomic(
            cached.with_name(name + ".verified"),
            json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}) + "\n",
        )
    return cached, link_or_copy(cached, dest)


def _give_up(url: str, part: Path, size: int, e: Exception, ways_out: str) -> str:
    have = part.stat().st_size if part.exists() else 0
    if have:
        return f"download of {url} stopped at {have} of {size} bytes ({e}); rerun to resume from {part}, or {ways_out}"
    return f"cannot download {url} ({e}): {ways_out}"


def _fetch(url: str, part: Path, offset: int, size: int, timeout: float, progress: bool) -> None:
    """Append the bytes of `url` from `offset` on to `part`; raise _Transient if the stream stops early."""
    stream, start, total = _open(url, offset, timeout)
    with stream:
        if total is not None and total != size:
            raise DismiError(f"{url} is {total} bytes, expected {size}: the URL does not point at the expected file")
        with (
            open(part, "r+b" if part.exists() else "wb") as out,
            progress_bar(
                total=size,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            out.seek(start)
            out.truncate()  # a server that ignored the Range request sends everything again
            try:
                while block := stream.read(_CHUNK):
                    out.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as e:
                raise _Transient(_reason(e)) from None
            written = out.tell()
    if written > size:
        part.unlink()
        raise DismiError(f"{url} sent more than {size} bytes: the URL does not point at the expected file")
    if written < size:
        raise _Transient(f"connection closed after {written} of {size} bytes")


def _open(url: str, offset: int, timeout: float) -> tuple[BinaryIO, int, int | None]:
    """Open `url` at `offset` -> (stream, offset it really starts at, total size if known)."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        return _open_file(url, offset)
    if scheme not in ("http", "https"):
        raise DismiError(f"URL {url} has scheme '{scheme}': use an http://, https:// or file:// URL")
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416:
            raise _StalePart from None
        if e.code in _TRANSIENT_STATUS:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise DismiError(f"{url} answered HTTP {e.code} {e.reason}: check the URL") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Transient(_reason(e)) from None
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return response, offset, None if match.group(2) == "*" else int(match.group(2))
        response.close()
        raise _Transient(f"server sent an unexpected range {response.headers.get('Content-Range')!r}")
    length = response.headers.get("Content-Length")
    return response, 0, int(length) if length is not None else None


def _open_file(url: str, offset: int) -> tuple[BinaryIO, int, int]:
    path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    try:
        stream = open(path, "rb")
    except OSError as e:
        raise DismiError(f"cannot read {url} ({e.strerror}): point the URL at an existing file") from None
    total = os.fstat(stream.fileno()).st_size
    start = min(offset, total)
    stream.seek(start)
    return stream, start, total


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None) or e
    if isinstance(reason, TimeoutError):
        return "timed out"
    return str(reason) or type(reason).__name__
