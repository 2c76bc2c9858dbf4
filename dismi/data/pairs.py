"""The pair dataset (paper Sec. 5.1): pairs of images with equal scale, shape and orientation.

Images are first split, inside each (scale, shape, orientation) group, into train and test images; pairs
are then drawn uniformly, without repetition, among the within-group pairs of each side. So no image is
used by both splits, and every group gives the test side its share of images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dismi.data.factors import FACTORS, SHARED_FACTORS
from dismi.data.pairfile import TEST, TRAIN, PairData
from dismi.data.shapes3d import read_images
from dismi.util.errors import DismiError
from dismi.util.files import file_sha256

_SHARED_COLUMNS = [FACTORS.index(f) for f in SHARED_FACTORS]


def make_pairs(
    classes: np.ndarray, n_pairs: int, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw `n_pairs` unique unordered pairs of rows of `classes` (N, 6) sharing the shared factors.

    Returns x, y (P,) int64 rows and split (P,) uint8 (TRAIN/TEST). round(test_fraction * n_pairs) pairs
    are test pairs. Raises DismiError when the request cannot be met.
    """
    if not 0 < test_fraction < 1:
        raise DismiError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
    n_test = int(round(test_fraction * n_pairs))
    n_train = n_pairs - n_test
    if n_test == 0 or n_train == 0:
        raise DismiError(
            f"n_pairs={n_pairs} with test_fraction={test_fraction} leaves "
            f"{'no test' if n_test == 0 else 'no train'} pairs: raise n_pairs or move test_fraction "
            f"towards 0.5"
        )
    rng = np.random.default_rng(seed)
    group = np.unique(classes[:, _SHARED_COLUMNS], axis=0, return_inverse=True)[1].reshape(-1)  # (N,)
    is_test = _split_images(group, test_fraction, rng)
    sides = []
    for which, side, n in ((TRAIN, ~is_test, n_train), (TEST, is_test, n_test)):
        rows = np.flatnonzero(side)
        x, y = _draw_pairs(rows, group[rows], n, rng, "train" if which == TRAIN else "test")
        sides.append((x, y, np.full(n, which, dtype=np.uint8)))
    x, y, split = (np.concatenate(parts) for parts in zip(*sides))
    # Pairs come out with x < y; swap half so x's hues are not biased low (rows follow the hues' order).
    swap = rng.random(n_pairs) < 0.5
    return np.where(swap, y, x), np.where(swap, x, y), split


def _split_images(group: np.ndarray, test_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """(N,) bool: round(test_fraction * size) random images of each group go to the test side."""
    order = np.lexsort((rng.random(group.size), group))  # grouped, random order within each group
    sizes = np.bincount(group)
    starts = np.cumsum(sizes) - sizes
    rank = np.empty(group.size, dtype=np.int64)
    rank[order] = np.arange(group.size) - starts[group[order]]
    return rank < np.round(test_fraction * sizes).astype(np.int64)[group]


def _draw_pairs(
    rows: np.ndarray, group: np.ndarray, n: int, rng: np.random.Generator, side: str
) -> tuple[np.ndarray, np.ndarray]:
    """`n` distinct pairs (x < y) of `rows` within a group, uniform over all such pairs.

    Every within-group pair gets a rank in [0, total) and n distinct ranks are drawn, so uniqueness is
    exact and even a request for all pairs costs one draw.
    """
    # File order has the hues slowest, so a group's rows are scattered: gather them.
    order = np.argsort(group, kind="stable")
    rows, group = rows[order], group[order]
    _, starts, sizes = np.unique(group, return_index=True, return_counts=True)
    n_pairs_in = sizes * (sizes - 1) // 2  # (G,) pairs inside each group
    total = int(n_pairs_in.sum())
    if n > total:
        raise DismiError(
            f"the {side} split allows only {total} distinct pairs but n_pairs asks for {n} there: "
            f"lower n_pairs, change test_fraction, or use a larger grid"
        )
    rank = rng.choice(total, size=n, replace=False)
    pair_starts = np.cumsum(n_pairs_in) - n_pairs_in
    g = np.searchsorted(pair_starts, rank, side="right") - 1  # group of each pair
    hi, lo = _unrank(rank - pair_starts[g])
    return rows[starts[g] + lo], rows[starts[g] + hi]


def _unrank(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair rank k = hi * (hi - 1) / 2 + lo, 0 <= lo < hi -> (hi, lo)."""
    hi = ((1 + np.sqrt(1 + 8 * k.astype(np.float64))) / 2).astype(np.int64)
    # Float rounding can land one off for huge k; nudge to the exact triangular root.
    hi -= hi * (hi - 1) // 2 > k
    hi += (hi + 1) * hi // 2 <= k
    return hi, k - hi * (hi - 1) // 2


def pair_data(path: str | Path, classes: np.ndarray, n_pairs: int, test_fraction: float, seed: int) -> PairData:
    """Pairs drawn from the validated Shapes3D file `path` (its class indices `classes`), with their images."""
    x, y, split = make_pairs(classes, n_pairs, test_fraction, seed)
    used = np.unique(np.concatenate([x, y]))  # (M,) sorted rows of the Shapes3D file
    return PairData(
        images=read_images(path, used),
        classes=classes[used],
        source=used,
        x=np.searchsorted(used, x),
        y=np.searchsorted(used, y),
        split=split,
        attrs={"seed": seed, "n_pairs": n_pairs, "test_fraction": test_fraction, "source_sha256": file_sha256(path)},
    )
