"""Stage 3: learn the shared representation S (report Sec. III-A, eq. 5-7).

Logged with dvclive (see stages/_driver.py): loss/total, loss/global, loss/local, loss/l1,
loss/classifier, and acc/shared/<factor>, the online classifiers' accuracy on test images.
"""
from __future__ import annotations

from pathlib import Path

import typer

from dismi import training
from stages import _driver
from stages import params as P


def main(pairs: Path = typer.Option(..., help="Pairs HDF5 file (output of the pairs stage)."),
         model: Path = typer.Option(..., help="Shared encoder model file to write."),
         checkpoint: Path = typer.Option(..., help="Resumable checkpoint (kept between runs)."),
         live: Path = typer.Option(..., help="dvclive directory for losses and online accuracies."),
         params: Path = typer.Option(Path("params.yaml"), help="Params file.")) -> None:
    cfg, device, data, data_sha256 = _driver.start(P.TrainShared, params, pairs, inputs=[], model=model,
                                                   checkpoint=checkpoint, live=live)
    trainer = training.SharedTrainer(**cfg.trainer_args(), device=device)
    _driver.train(trainer, data, cfg, data_sha256=data_sha256, model=model, checkpoint=checkpoint, live=live)
