"""Writing an offline Shapes3D file with the official HDF5 layout, from images composed by dismi.synthetic.compose.

Together dismi.synthetic.raytrace (geometry), dismi.synthetic.compose (colour) and this module (the file) render the
Shapes3D scene offline: the same factors, grid and layout as the official 3dshapes.h5.
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from dismi.data.factors import SIZES, classes_to_values
from dismi.synthetic.compose import GRIDS, check_classes, image_blocks
from dismi.synthetic.raytrace import IMAGE_SIZE
from dismi.util.files import atomic_path
from dismi.util.progress import bar as progress_bar

DEFAULT_CHUNK_ROWS = 15  # images per HDF5 chunk: the 15 orientations of one object (see write_synthetic)
# The real 3dshapes.h5's most likely chunks: h5py's automatic choice for (480000, 64, 64, 3) uint8, a
# 4 x 4 pixel patch of one channel over 15,000 images (chunks="official" in write_synthetic).
OFFICIAL_CHUNKS = (15000, 4, 4, 1)
CHUNK_LAYOUTS = ("rows", "official")


def _chunks(blocks: Iterator[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """Regroup consecutive image blocks into arrays of exactly `rows` images (the last may be short)."""
    pending: list[np.ndarray] = []
    have = 0
    for blk in blocks:
        pending.append(blk)
        have += len(blk)
        if have < rows:
            continue
        cat = np.concatenate(pending) if len(pending) > 1 else pending[0]
        n_full = (len(cat) // rows) * rows
        for a in range(0, n_full, rows):
            yield cat[a : a + rows]
        rest = cat[n_full:]
        pending, have = ([rest.copy()], len(rest)) if len(rest) else ([], 0)
    if have:
        yield np.concatenate(pending)


def _deflate(chunk: np.ndarray, rows: int, level: int) -> bytes:
    if len(chunk) < rows:  # HDF5 stores edge chunks at full size
        pad = np.zeros((rows, *chunk.shape[1:]), dtype=chunk.dtype)
        pad[: len(chunk)] = chunk
        chunk = pad
    return zlib.compress(np.ascontiguousarray(chunk).data, level)


def write_synthetic(
    path: str | Path,
    grid: str | np.ndarray = "full",
    progress: bool = True,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    level: int = 6,
    workers: int | None = None,
    chunks: str = "rows",
) -> Path:
    """Render `grid` (a GRIDS name or (M, 6) class indices in official order) into one HDF5 file.

    Layout as the official file: `images` (N, 64, 64, 3) uint8 and `labels` (N, 6) float64 factor
    values, rows in official order. chunks="rows": images are gzip-compressed in chunks of
    `chunk_rows` whole images (default 15, the orientations of one object: a random image costs one
    184 KB chunk to inflate, and the full file comes out smaller than the official one); chunks are
    deflated in a thread pool (zlib releases the GIL) and stored with write_direct_chunk, which any
    HDF5 reader inflates as ordinary gzip chunks. chunks="official": the real file's likely layout,
    gzip chunks of OFFICIAL_CHUNKS (a 4 x 4 patch of one channel over 15,000 images, fewer rows on
    a smaller grid), compressed by HDF5 on one thread; `chunk_rows` and `workers` are then unused.
    The file is written under a temporary name and renamed at the end (dismi.util.files.atomic_path),
    so an interrupted run never leaves a complete-looking file.
    """
    path = Path(path)
    if chunks not in CHUNK_LAYOUTS:
        raise ValueError(f"chunks must be one of {CHUNK_LAYOUTS}, got {chunks!r}")
    classes = GRIDS[grid] if isinstance(grid, str) else check_classes(grid)
    if len(classes) == 0:
        raise ValueError("the grid is empty")
    order = np.ravel_multi_index(tuple(classes.T), SIZES)
    if (np.diff(order) <= 0).any():
        raise ValueError("grid rows must be in official order (orientation fastest), without repeats")
    n = len(classes)
    official = chunks == "official"
    rows = min(OFFICIAL_CHUNKS[0] if official else max(1, int(chunk_rows)), n)
    shape = (rows, *OFFICIAL_CHUNKS[1:]) if official else (rows, IMAGE_SIZE, IMAGE_SIZE, 3)
    workers = workers or max(1, os.cpu_count() or 1)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        images = f.create_dataset(
            "images",
            shape=(n, IMAGE_SIZE, IMAGE_SIZE, 3),
            dtype=np.uint8,
            chunks=shape,
            compression="gzip",
            compression_opts=level,
        )
        f.create_dataset("labels", data=classes_to_values(classes), compression="gzip", shuffle=True)
        blocks = image_blocks(classes, progress)
        bar = progress_bar(
            total=n, unit="img", desc=f"render {path.name}", disable=not progress, smoothing=0.05, mininterval=0.5
        )
        with bar:
            if official:
                # Whole rows of chunks per write: HDF5 compresses each chunk once, never reads one back.
                start = 0
                for chunk in _chunks(blocks, rows):
                    images[start : start + len(chunk)] = chunk
                    start += len(chunk)
                    bar.update(len(chunk))
            else:
                _write_direct(images, _chunks(blocks, rows), rows, level, workers, bar)
    return path


def _write_direct(
    images: h5py.Dataset, chunks: Iterator[np.ndarray], rows: int, level: int, workers: int, bar: tqdm
) -> None:
    """Deflate chunks of `rows` whole images in a thread pool and store them with write_direct_chunk."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        inflight: deque = deque()
        start = 0

        def drain(limit: int) -> None:
            while len(inflight) > limit:
                at, count, fut = inflight.popleft()
                images.id.write_direct_chunk((at, 0, 0, 0), fut.result())
                bar.update(count)

        for chunk in chunks:
            inflight.append((start, len(chunk), pool.submit(_deflate, chunk, rows, level)))
            start += len(chunk)
            drain(8 * workers)
        drain(0)
