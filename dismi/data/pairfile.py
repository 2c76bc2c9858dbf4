"""The pair dataset file that both training stages and evaluation read (HDF5).

Layout (M images used by P pairs):
    images   (M, 64, 64, 3) uint8   the images the pairs use, in official-file order
    classes  (M, 6)         int64   class index (not value) of each factor, official order
    source   (M,)           int64   each image's index in the Shapes3D file
    x, y     (P,)           int64   rows of `images` forming pair p
    split    (P,)           uint8   0 = train, 1 = test; no image is used by both splits
attrs: seed, n_pairs, test_fraction, source_sha256 (of the Shapes3D file it came from)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from dismi.data.factors import FACTORS, SIZES
from dismi.util.errors import DismiError
from dismi.util.files import atomic_path

TRAIN, TEST = 0, 1


@dataclass
class PairData:
    images: np.ndarray  # (M, 64, 64, 3) uint8
    classes: np.ndarray  # (M, 6) int64
    source: np.ndarray  # (M,) int64
    x: np.ndarray  # (P,) int64
    y: np.ndarray  # (P,) int64
    split: np.ndarray  # (P,) uint8
    attrs: dict = field(default_factory=dict)

    def pair_indices(self, which: int) -> np.ndarray:
        """Pair rows of one split (TRAIN or TEST)."""
        return np.flatnonzero(self.split == which)

    def image_rows(self, which: int) -> np.ndarray:
        """Sorted unique image rows used by one split's pairs."""
        p = self.pair_indices(which)
        return np.unique(np.concatenate([self.x[p], self.y[p]]))

    def n_values(self) -> list[int]:
        """How many distinct values each factor takes here (fewer than official on a reduced grid)."""
        return [int(np.unique(self.classes[:, f]).size) for f in range(len(FACTORS))]


def write_pairs(path: str | Path, data: PairData) -> None:
    """Write atomically (dismi.util.files.atomic_path), so a crash leaves no complete-looking file."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        # Chunked per image with gzip: synthetic and real Shapes3D images are mostly flat colour.
        f.create_dataset(
            "images",
            data=data.images,
            chunks=(min(64, max(1, len(data.images))), 64, 64, 3),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        for name in ("classes", "source", "x", "y", "split"):
            f.create_dataset(name, data=getattr(data, name))
        for k, v in data.attrs.items():
            f.attrs[k] = v


def load_pairs(path: str | Path) -> PairData:
    """Read a pairs file, checking its layout; raise DismiError with one line on the first problem."""
    path = Path(path)
    if not path.exists():
        raise DismiError(f"pairs file {path} not found: run the pairs stage first (dvc repro pairs)")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise DismiError(
            f"pairs file {path} is not a readable HDF5 file: delete it and rerun the pairs stage"
        ) from None
    with f:
        missing = [k for k in ("images", "classes", "source", "x", "y", "split") if k not in f]
        if missing:
            raise DismiError(f"pairs file {path} lacks dataset '{missing[0]}': rerun the pairs stage")
        d = PairData(
            images=f["images"][()],
            classes=f["classes"][()].astype(np.int64),
            source=f["source"][()].astype(np.int64),
            x=f["x"][()].astype(np.int64),
            y=f["y"][()].astype(np.int64),
            split=f["split"][()].astype(np.uint8),
            attrs={k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()},
        )
    m = len(d.images)
    if d.images.dtype != np.uint8 or d.images.shape[1:] != (64, 64, 3):
        raise DismiError(
            f"pairs file {path}: images must be (M, 64, 64, 3) uint8, got {d.images.shape} {d.images.dtype}"
        )
    if d.classes.shape != (m, len(FACTORS)) or (d.classes < 0).any() or (d.classes >= np.array(SIZES)).any():
        raise DismiError(f"pairs file {path}: classes must be (M, 6) indices on the official grid")
    if not (len(d.x) == len(d.y) == len(d.split)) or len(d.x) == 0:
        raise DismiError(f"pairs file {path}: x, y and split must have the same non-zero length")
    if (d.x < 0).any() or (d.x >= m).any() or (d.y < 0).any() or (d.y >= m).any():
        raise DismiError(f"pairs file {path}: pair rows point outside images")
    return d
