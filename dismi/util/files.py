"""One module for files: atomic writes, hashing, and the guard every stage puts on its outputs.

An atomic write goes to a temporary file beside the destination that is renamed into place only
once complete, so an interrupted run never leaves a complete-looking file; the temporary file is
removed on any failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dismi.util.errors import DismiError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it is renamed onto `path`, on any
    exception (KeyboardInterrupt too) it is deleted and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # hidden; the pid keeps two writers apart
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call writer(temporary path), then rename the result onto `path`; returns `path`."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def link_or_copy(src: str | Path, dest: str | Path) -> str:
    """Put `src` at `dest` as a hard link, else (another file system, no links) as a copy; atomic.
    -> "linked" or "copied". Nothing may write into `dest` in place afterwards: it may be `src`."""
    how = "linked"

    def write(tmp: Path) -> None:
        nonlocal how
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            how = "copied"

    atomic_write(dest, write)
    return how


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def guard_outputs(
    inputs: Iterable[str | Path], outputs: Iterable[str | Path], *, kept: Iterable[str | Path] = ()
) -> None:
    """Refuse outputs that would destroy an input or cannot be files, then delete the stale outputs.

    Raises DismiError with one line, before anything is deleted, when an output (or a `kept` path)
    is also an input, an output is named twice, an output is an existing directory, or its folder
    is a file. Then deletes every output, so a run that fails later leaves no older output looking
    current. `kept` paths are written by the stage but survive between runs (a checkpoint to resume
    from, a log directory): checked against the inputs, never deleted.
    """
    inputs, outputs, kept = [Path(p) for p in inputs], [Path(p) for p in outputs], [Path(p) for p in kept]
    resolved = {p.resolve(): p for p in inputs}
    seen: dict[Path, Path] = {}
    for out in [*outputs, *kept]:
        r = out.resolve()
        if r in resolved:
            raise DismiError(f"output {out} is also an input ({resolved[r]}): write the output to another path")
        if r in seen:
            raise DismiError(f"output {out} is named twice (also as {seen[r]}): give each output its own path")
        seen[r] = out
    for out in outputs:
        if out.is_dir():
            raise DismiError(f"output {out} is an existing directory: name a file to write instead")
        folder = next((a for a in out.parents if a.exists()), None)
        if folder is not None and not folder.is_dir():
            raise DismiError(f"output {out} cannot be written: {folder} is a file, not a directory")
    for out in outputs:
        out.unlink(missing_ok=True)
