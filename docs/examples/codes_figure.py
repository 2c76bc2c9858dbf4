"""Load the trained encoders' exported codes and draw one figure: each test image's S and E codes in two
dimensions (PCA), coloured by one factor. What to look for: S sorts by shape and not by wall hue, E the
other way round.

    python -m stages export --pairs data/pairs.h5 --shared models/shared.pt --exclusive models/exclusive.pt --out codes.npz
    python docs/examples/codes_figure.py codes.npz codes.png

In a notebook, the encoders themselves: `dismi.load_encoder("models/exclusive.pt")` and `dismi.encode`.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def pca2(codes: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, 2): the codes on their two leading principal directions."""
    centred = codes - codes.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def main(codes_path: str, out: str) -> None:
    z = np.load(codes_path)
    factors = list(z["factors"])
    fig, axes = plt.subplots(2, 2, figsize=(8, 7.5), layout="constrained")
    for row, code in enumerate(("s", "e")):
        xy = pca2(z[f"{code}_test"])
        for col, factor in enumerate(("shape", "wall_hue")):
            ax = axes[row, col]
            ax.scatter(xy[:, 0], xy[:, 1], c=z["classes_test"][:, factors.index(factor)], s=4, cmap="tab10")
            ax.set_title(f"{code.upper()} (test images), coloured by {factor}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.savefig(out, dpi=100)
    print(f"{out}: {len(xy)} test images")


if __name__ == "__main__":
    main(*sys.argv[1:3])
