"""Not a stage: the S and E codes of every train and test image, with their factor classes, in one
compressed .npz, for analysis outside the pipeline (a notebook, another metric library).

Arrays: s_<split> (N, shared_dim) and e_<split> (N, exclusive_dim) float32 codes, classes_<split> (N, 6) int64
factor classes (columns in `factors`' order; the values of each: docs/facts.md, "Dataset"), image_<split> (N,) the images' rows in the Shapes3D file, for
split in train and test; `factors` the six factor names. The codes are those evaluation reads: eval mode,
final weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from dismi.data.factors import FACTORS
from dismi.data.pairfile import TEST, TRAIN, load_pairs
from dismi.model.networks import encode
from dismi.train import modelfile
from dismi.util.files import atomic_write, file_sha256


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: given a path, numpy would append ".npz" to it
        np.savez_compressed(f, **arrays)


def main(
    pairs: Path = typer.Option(..., help="Pairs HDF5 file the encoders were trained on (the pairs stage's)."),
    shared: Path = typer.Option(..., help="Shared encoder model file (the train-shared stage's)."),
    exclusive: Path = typer.Option(..., help="Exclusive encoder model file (the train-exclusive stage's)."),
    out: Path = typer.Option(..., help="Compressed .npz to write."),
    device: str = typer.Option("cpu", help="Device that encodes (cpu, cuda, cuda:1)."),
) -> None:
    data, data_sha256 = load_pairs(pairs), file_sha256(pairs)
    arrays: dict[str, np.ndarray] = {"factors": np.array(FACTORS)}
    for name, path in (("s", shared), ("e", exclusive)):
        encoder, meta = modelfile.load_model(path, device)
        modelfile.check_model(meta, path, "shared" if name == "s" else "exclusive", data_sha256)
        for split, which in (("train", TRAIN), ("test", TEST)):
            rows = data.image_rows(which)
            arrays[f"{name}_{split}"] = encode(encoder, data.images[rows], device=device)
            arrays[f"classes_{split}"], arrays[f"image_{split}"] = data.classes[rows], data.source[rows]
    atomic_write(out, lambda tmp: _savez(tmp, arrays))
    sizes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items() if k != "factors")
    typer.echo(f"{out}: {sizes}")
