"""Shapes3D factors: names, value grids, class indices and the paper's ideal accuracies."""

from __future__ import annotations

import numpy as np

FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SIZES = (10, 10, 10, 8, 4, 15)
N_IMAGES = int(np.prod(SIZES))  # 480,000

# Official value grids, in the order of the `labels` columns.
VALUES = (
    np.linspace(0.0, 0.9, 10),
    np.linspace(0.0, 0.9, 10),
    np.linspace(0.0, 0.9, 10),
    np.linspace(0.75, 1.25, 8),
    np.arange(4, dtype=np.float64),
    np.linspace(-30.0, 30.0, 15),
)

# Pairs share these (paper Sec. 5.1); the hues are what each image keeps to itself.
SHARED_FACTORS = ("scale", "shape", "orientation")
EXCLUSIVE_FACTORS = ("floor_hue", "wall_hue", "object_hue")

_TOL = 1e-6


def values_to_classes(labels: np.ndarray) -> np.ndarray:
    """(N, 6) factor values -> (N, 6) int64 class indices on the official grid.

    Raises ValueError naming the first column and row whose value is off the grid, NaN and inf included.
    """
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[1] != len(FACTORS):
        raise ValueError(f"labels must have shape (N, 6), got {labels.shape}")
    classes = np.empty(labels.shape, dtype=np.int64)
    for f, grid in enumerate(VALUES):
        col = labels[:, f]
        idx = np.clip(np.searchsorted(grid, col), 1, len(grid) - 1)
        idx = np.where(np.abs(col - grid[idx - 1]) <= np.abs(col - grid[idx]), idx - 1, idx)
        bad = np.flatnonzero(~(np.abs(grid[idx] - col) <= _TOL))  # written so that NaN is bad too
        if bad.size:
            r = int(bad[0])
            what = "not on the official grid" if np.isfinite(col[r]) else "not a finite number"
            raise ValueError(f"label {FACTORS[f]}={float(col[r])!r} at row {r} is {what}")
        classes[:, f] = idx
    return classes


def classes_to_values(classes: np.ndarray) -> np.ndarray:
    """(N, 6) class indices -> (N, 6) float64 factor values."""
    classes = np.asarray(classes)
    return np.stack([VALUES[f][classes[:, f]] for f in range(len(FACTORS))], axis=1)


def classes_to_index(classes: np.ndarray) -> np.ndarray:
    """(N, 6) class indices -> (N,) position in the official file (orientation fastest)."""
    return np.ravel_multi_index(tuple(np.asarray(classes).T), SIZES).astype(np.int64)


def index_to_classes(index: np.ndarray) -> np.ndarray:
    """(N,) position in the official file -> (N, 6) class indices."""
    return np.stack(np.unravel_index(np.asarray(index), SIZES), axis=1).astype(np.int64)


def chance_level(n_values: int) -> float:
    return 1.0 / n_values


def ideal_accuracy(factor: str, representation: str, n_values: int) -> float:
    """What a perfectly disentangled code scores: 1 on its own factors, chance on the others.

    `representation` is "shared" or "exclusive"; `n_values` is how many values the factor
    takes in the data at hand (the official grid's size, or fewer on a reduced grid).
    """
    own = SHARED_FACTORS if representation == "shared" else EXCLUSIVE_FACTORS
    if representation not in ("shared", "exclusive"):
        raise ValueError(f"representation must be 'shared' or 'exclusive', got {representation!r}")
    return 1.0 if factor in own else chance_level(n_values)
