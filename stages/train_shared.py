"""Stage 3: learn the shared representation S (report Sec. III-A, eq. 5-7).

Logged with dvclive (see stages/_driver.py): loss/total, mi/global, mi/local (the MI estimates it
maximises), loss/l1, loss/classifier, and acc/shared/<factor>, the online classifiers' accuracy on
test images. With online_earlier also loss/classifier_earlier and acc_earlier/shared/<factor>: the earlier
implementations' online protocol (softmax before the cross-entropy, accuracy on training batches).
"""
from __future__ import annotations

from pathlib import Path

import typer

from dismi import training
from stages import _driver
from stages import params as P


def main(pairs: Path = typer.Option(..., help="Pairs HDF5 file (output of the pairs stage)."),
         model: Path = typer.Option(..., help="Shared encoder model file to write."),
         checkpoints: Path = typer.Option(None, help="Directory of resumable checkpoints (kept between runs, "
                                                     "not a DVC output; default $DISMI_CHECKPOINTS, else "
                                                     "~/.cache/dismi/checkpoints)."),
         live: Path = typer.Option(..., help="dvclive directory for losses and online accuracies."),
         params: Path = typer.Option(Path("params.yaml"), help="Params file.")) -> None:
    with _driver.start(P.TrainShared, params, pairs, inputs=[], model=model, checkpoints=checkpoints,
                       live=live) as (cfg, device, data, data_sha256):
        trainer = training.SharedTrainer(**cfg.trainer_args(), device=device)
        _driver.train(trainer, data, cfg, data_sha256=data_sha256, model=model, checkpoints=checkpoints, live=live,
                      module=__name__)
