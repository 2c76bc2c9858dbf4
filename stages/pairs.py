"""Stage 2: the train/test pair dataset that both training stages read (training never opens Shapes3D)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from dismi.data.pairfile import TEST, write_pairs
from dismi.data.pairs import pair_data
from dismi.data.shapes3d import validate_file
from dismi.util.files import guard_outputs
from stages import params as P


def main(
    data: Path = typer.Option(..., help="Shapes3D HDF5 file (output of the download stage)."),
    out: Path = typer.Option(..., help="Pairs HDF5 file to write."),
    params: Path = typer.Option(Path("params.yaml"), help="Params file."),
) -> None:
    guard_outputs([data, params], [out])  # as under DVC: a failed run leaves no older file looking current
    cfg = P.Pairs.load(params)
    classes = validate_file(data)
    pairs = pair_data(data, classes, cfg.n_pairs, cfg.test_fraction, cfg.seed)
    write_pairs(out, pairs)
    n_test = int(np.sum(pairs.split == TEST))
    typer.echo(f"{out}: {len(pairs.x)} pairs ({n_test} test) over {len(pairs.images)} images")
