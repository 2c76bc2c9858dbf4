"""The Shapes3D file contract: one validator for the official HDF5 layout, and a chunk-aware image reader.

Layout (docs/facts.md, "Dataset"): `images` (N, 64, 64, 3) uint8 and `labels` (N, 6) float64 factor
values, rows in strictly increasing official index (orientation fastest). A reduced grid, a subset of
each factor's values, is valid too. The real file holds 480,000 images (5.9 GB uncompressed), so
nothing here loads all images.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from dismi.data.factors import FACTORS, classes_to_index, values_to_classes
from dismi.util.errors import DismiError

# The official file as published in TensorFlow Datasets' checksum list.
SHAPES3D_SIZE = 267_573_662
SHAPES3D_SHA256 = "0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785"
IMAGE_SHAPE = (64, 64, 3)

# Rows per read when chunks hold fewer rows (4096 images, 50 MB). A read never splits a chunk's rows,
# so a file chunked over more rows reads one chunk row-block at a time: 15,000 images (184 MB) for the
# real file's likely (15000, 4, 4, 1) chunks. read_images holds one such slab at a time.
_MAX_SLAB_ROWS = 4096

_FIX = "delete it and rerun the download stage (dvc repro download)"


def validate_file(path: str | Path) -> np.ndarray:
    """Check `path` against the Shapes3D contract and return its (N, 6) int64 class indices.

    Raises DismiError with one line naming the first violation.
    """
    path = Path(path)
    if not path.is_file():
        raise DismiError(f"Shapes3D file {path} not found: run the download stage first (dvc repro download)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        # HDF5 checks the superblock and the recorded end of file, so truncation fails here too.
        raise DismiError(f"Shapes3D file {path} is not a readable HDF5 file ({_first_line(e)}): {_FIX}") from None
    with f:
        _check_layout(path, f)
        try:
            labels = f["labels"][()]  # (N, 6) float64, 23 MB for the full file
        except OSError as e:
            raise DismiError(f"Shapes3D file {path}: labels cannot be read ({_first_line(e)}): {_FIX}") from None
    try:
        classes = values_to_classes(labels)
    except ValueError as e:
        raise DismiError(f"Shapes3D file {path}: {e}: {_FIX}") from None
    _check_order(path, classes)
    return classes


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _check_layout(path: Path, f: h5py.File) -> None:
    for key in ("images", "labels"):
        if not isinstance(f.get(key), h5py.Dataset):
            raise DismiError(f"Shapes3D file {path} has no dataset '{key}' (found {sorted(f.keys())}): {_FIX}")
    images, labels = f["images"], f["labels"]
    if images.dtype != np.uint8:
        raise DismiError(f"Shapes3D file {path}: images have dtype {images.dtype}, expected uint8: {_FIX}")
    if labels.dtype != np.float64:
        raise DismiError(f"Shapes3D file {path}: labels have dtype {labels.dtype}, expected float64: {_FIX}")
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE or images.shape[0] == 0:
        raise DismiError(
            f"Shapes3D file {path}: images have shape {images.shape}, expected (N, 64, 64, 3) with N >= 1: {_FIX}"
        )
    if labels.shape != (images.shape[0], len(FACTORS)):
        raise DismiError(
            f"Shapes3D file {path}: labels have shape {labels.shape}, expected "
            f"({images.shape[0]}, {len(FACTORS)}) to match the images: {_FIX}"
        )


def _check_order(path: Path, classes: np.ndarray) -> None:
    # Strictly increasing official index means official order and no duplicated factor combination.
    index = classes_to_index(classes)
    bad = np.flatnonzero(np.diff(index) <= 0)
    if bad.size:
        r = int(bad[0]) + 1
        raise DismiError(
            f"Shapes3D file {path}: row {r} (classes {classes[r].tolist()}) does not come after "
            f"row {r - 1} (classes {classes[r - 1].tolist()}) in the official order "
            f"(orientation fastest): {_FIX}"
        )


def read_images(path: str | Path, rows: np.ndarray) -> np.ndarray:
    """Images at `rows` (strictly increasing) -> (len(rows), 64, 64, 3) uint8.

    Reads covering slabs instead of fancy-indexing row by row: a compressed chunk is then decompressed
    once, however many wanted rows it holds, and neighbouring rows cost one call. Every slab is read
    into one reused buffer of the largest slab's size (see _MAX_SLAB_ROWS), so besides the result at
    most one slab is held at a time.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1 or (np.diff(rows) <= 0).any():
        raise ValueError("rows must be a strictly increasing 1-D array")
    with h5py.File(path, "r") as f:
        images = f["images"]
        if rows.size == 0:
            return np.empty((0, *images.shape[1:]), dtype=images.dtype)
        if rows[0] < 0 or rows[-1] >= len(images):
            raise ValueError(f"rows must lie in [0, {len(images)}), got {rows[0]}..{rows[-1]}")
        out = np.empty((rows.size, *images.shape[1:]), dtype=images.dtype)
        block = images.chunks[0] if images.chunks else 1
        slabs = _slabs(rows, block, len(images))
        buffer = np.empty((max(hi - lo for lo, hi, _, _ in slabs), *images.shape[1:]), dtype=images.dtype)
        for lo, hi, first, last in slabs:
            slab = buffer[: hi - lo]  # (hi - lo, 64, 64, 3), a view: no second slab is ever allocated
            images.read_direct(slab, np.s_[lo:hi])
            np.take(slab, rows[first:last] - lo, axis=0, out=out[first:last], mode="clip")  # "raise" buffers `out`
    return out


def _slabs(rows: np.ndarray, block: int, n: int) -> list[tuple[int, int, int, int]]:
    """Cover `rows` with reads of whole blocks: (lo, hi) file rows and the [first, last) of `rows` inside.

    Runs of adjacent blocks merge into one read, cut every _MAX_SLAB_ROWS rows (or every block if larger),
    so no read spans more than max(_MAX_SLAB_ROWS, block) rows.
    """
    blocks = rows // block
    new_run = np.r_[True, np.diff(blocks) > 1]
    run_start = blocks[new_run][np.cumsum(new_run) - 1]  # first block of each row's run
    piece = (blocks - run_start) // max(1, _MAX_SLAB_ROWS // block)
    firsts = np.flatnonzero(new_run | np.r_[False, np.diff(piece) != 0])
    lasts = np.r_[firsts[1:], rows.size]
    los = blocks[firsts] * block
    his = np.minimum(n, (blocks[lasts - 1] + 1) * block)
    return list(zip(los.tolist(), his.tolist(), firsts.tolist(), lasts.tolist()))
