"""Composing Shapes3D images from the ray-traced layers: factor grids, hue colours, fixed-point colour tables.

An image is a sum of per-region colour tables (dismi.synthetic.raytrace's layers times its hues' colours) in
16-bit fixed point: exact integer arithmetic, so an image's bytes do not depend on the batch it is
rendered in or on the thread count.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cache

import numpy as np

from dismi.data.factors import FACTORS, SIZES, VALUES
from dismi.synthetic.raytrace import FLOOR, IMAGE_SIZE, OBJECT, WALL, geometry_layers
from dismi.util.progress import bar as progress_bar

_HUE_REGION = {0: FLOOR, 1: WALL, 2: OBJECT}  # factor column -> region coloured by that hue
_FIXED_BITS = 8  # colour tables hold value * 256; the sum of four fits in uint16


# --------------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------------


def make_grid(per_factor: Sequence[Sequence[int]]) -> np.ndarray:
    """Per-factor value indices (six lists, official factor order) -> (M, 6) int64 classes, official order.

    Each list holds distinct class indices of its factor; rows come out with orientation fastest and
    floor hue slowest, exactly as the official file orders them.
    """
    if len(per_factor) != len(FACTORS):
        raise ValueError(f"need one index list per factor ({len(FACTORS)}), got {len(per_factor)}")
    cols = []
    for name, size, given in zip(FACTORS, SIZES, per_factor):
        idx = np.unique(np.asarray(given, dtype=np.int64))
        if idx.size == 0 or idx.size != len(given):
            raise ValueError(f"{name}: need at least one class index, all distinct, got {list(given)}")
        if idx[0] < 0 or idx[-1] >= size:
            raise ValueError(f"{name}: class indices must lie in [0, {size}), got {list(given)}")
        cols.append(idx)
    mesh = np.meshgrid(*cols, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


GRID_SPECS: dict[str, tuple[tuple[int, ...], ...]] = {
    "full": tuple(tuple(range(n)) for n in SIZES),
    # 5 of each hue (every other one), 4 scales, all 4 shapes, 5 orientations: 10,000 images. Each
    # (scale, shape, orientation) group keeps 125 hue combinations, so pairs with different hues abound.
    "small": ((0, 2, 4, 6, 8), (1, 3, 5, 7, 9), (0, 2, 5, 7, 9), (0, 2, 5, 7), (0, 1, 2, 3), (0, 4, 7, 10, 14)),
}


class _Grids(Mapping):
    """Grid name -> (M, 6) int64 class indices, built on first use (the full grid is 23 MB)."""

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in GRID_SPECS:
            raise KeyError(f"unknown grid {name!r}; known: {sorted(GRID_SPECS)}")
        return _grid(name).copy()

    def __iter__(self) -> Iterator[str]:
        return iter(GRID_SPECS)

    def __len__(self) -> int:
        return len(GRID_SPECS)


@cache
def _grid(name: str) -> np.ndarray:
    g = make_grid(GRID_SPECS[name])
    g.setflags(write=False)
    return g


GRIDS: Mapping[str, np.ndarray] = _Grids()


# --------------------------------------------------------------------------------------------------
# Colour
# --------------------------------------------------------------------------------------------------


def hue_to_rgb(hue: np.ndarray | float) -> np.ndarray:
    """Hue in [0, 1) -> fully saturated, full-value RGB in [0, 255] (float64, shape (..., 3))."""
    h6 = np.asarray(hue, dtype=np.float64)[..., None] * 6.0
    rgb = np.stack(
        [np.abs(h6[..., 0] - 3.0) - 1.0, 2.0 - np.abs(h6[..., 0] - 2.0), 2.0 - np.abs(h6[..., 0] - 4.0)], axis=-1
    )
    return np.clip(rgb, 0.0, 1.0) * 255.0


# --------------------------------------------------------------------------------------------------
# Composing images from colour tables
# --------------------------------------------------------------------------------------------------


class _Tables:
    """Fixed-point colour tables for a set of geometries and hues.

    base[g]          : (G, 12288) uint16, colour-free light (sky, highlights) * 256 + 128 (rounding)
    hue[f][g, i]     : (G, H_f, 12288) uint16, what hue i of factor f adds * 256
    image = (base[g] + hue[0][g, i_floor] + hue[1][g, i_wall] + hue[2][g, i_obj]) >> 8
    Every term is rounded on its own and the sum is exact, so an image's bytes do not depend on which
    other images are rendered with it. The terms of a pixel sum to at most 255.5 * 256 < 2^16.
    """

    def __init__(self, geoms: np.ndarray, hues: Sequence[np.ndarray], progress: bool = False):
        scale = float(1 << _FIXED_BITS)
        n_pix = IMAGE_SIZE * IMAGE_SIZE * 3
        self.base = np.empty((len(geoms), n_pix), dtype=np.uint16)
        self.hue = [np.empty((len(geoms), len(h), n_pix), dtype=np.uint16) for h in hues]
        # Channel levels (0..5) of each hue used: (H_f, 3)
        levels = [np.rint(hue_to_rgb(VALUES[f][h]) / 51.0).astype(np.int64) for f, h in zip((0, 1, 2), hues)]
        pix = np.arange(IMAGE_SIZE * IMAGE_SIZE)[None, :, None]
        todo = geoms.tolist()
        if progress:
            todo = progress_bar(todo, unit="geometry", desc="ray trace", mininterval=0.5)
        for gi, (sc, sh, orr) in enumerate(todo):
            const, layers = geometry_layers(sc, sh, orr)
            self.base[gi] = (np.round(const * scale) + (1 << (_FIXED_BITS - 1))).reshape(-1)
            for f in range(3):
                lay = np.round(layers[_HUE_REGION[f]] * (255.0 * scale))  # (6, 4096)
                self.hue[f][gi] = lay[levels[f][:, None, :], pix].reshape(len(hues[f]), n_pix)


def _split_grid(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """classes (N,6) -> unique geometries (G,3), geometry index (N,), per hue factor unique hues and index."""
    geoms, g_idx = np.unique(classes[:, 3:], axis=0, return_inverse=True)
    hues, h_idx = [], []
    for f in range(3):
        u, i = np.unique(classes[:, f], return_inverse=True)
        hues.append(u)
        h_idx.append(i.reshape(-1))
    return geoms, g_idx.reshape(-1), hues, h_idx


def check_classes(classes: np.ndarray) -> np.ndarray:
    classes = np.asarray(classes)
    if classes.ndim != 2 or classes.shape[1] != len(FACTORS):
        raise ValueError(f"classes must have shape (N, 6), got {classes.shape}")
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"classes must be integer class indices, got dtype {classes.dtype}")
    classes = classes.astype(np.int64)
    for f, (name, size) in enumerate(zip(FACTORS, SIZES)):
        if classes.size and (classes[:, f].min() < 0 or classes[:, f].max() >= size):
            raise ValueError(f"{name} class indices must lie in [0, {size})")
    return classes


def _compose(tables: _Tables, g: np.ndarray, h: Sequence[np.ndarray], out: np.ndarray) -> None:
    acc = tables.base[g]
    acc += tables.hue[0][g, h[0]]
    acc += tables.hue[1][g, h[1]]
    acc += tables.hue[2][g, h[2]]
    acc >>= _FIXED_BITS
    out[...] = acc.reshape(out.shape)


def _product_axes(classes: np.ndarray) -> list[np.ndarray] | None:
    """The per-factor value lists when `classes` is exactly their product grid in official order."""
    axes = [np.unique(classes[:, f]) for f in range(len(FACTORS))]
    if int(np.prod([len(a) for a in axes])) != len(classes):
        return None
    return axes if np.array_equal(make_grid(axes), classes) else None


def image_blocks(classes: np.ndarray, progress: bool = False) -> Iterator[np.ndarray]:
    """Images of `classes` in order, as consecutive (n, 64, 64, 3) uint8 blocks. Ray traces every
    geometry now; composes the images as the blocks are consumed."""
    geoms, g, hues, h = _split_grid(classes)
    tables = _Tables(geoms, hues, progress)
    return _compose_blocks(classes, tables, len(geoms), g, hues, h)


def _compose_blocks(
    classes: np.ndarray, tables: _Tables, n_geo: int, g: np.ndarray, hues: Sequence[np.ndarray], h: Sequence[np.ndarray]
) -> Iterator[np.ndarray]:
    axes = _product_axes(classes)
    if axes is None:  # any list of classes: gather per image
        step = 960
        for a in range(0, len(classes), step):
            b = min(a + step, len(classes))
            out = np.empty((b - a, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
            _compose(tables, g[a:b], [x[a:b] for x in h], out)
            yield out
        return
    # Product grid: rows run over hue triples (floor slowest), and inside each over every geometry in
    # the order of the unique geometries. Share the floor + wall sum across object hues.
    base = np.empty_like(tables.base)
    acc = np.empty_like(tables.base)
    for i in range(len(hues[0])):
        for j in range(len(hues[1])):
            np.add(tables.base, tables.hue[0][:, i], out=base)
            base += tables.hue[1][:, j]
            for k in range(len(hues[2])):
                np.add(base, tables.hue[2][:, k], out=acc)
                acc >>= _FIXED_BITS
                yield acc.astype(np.uint8).reshape(n_geo, IMAGE_SIZE, IMAGE_SIZE, 3)
