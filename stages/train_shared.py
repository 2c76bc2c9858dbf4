"""Stage 3: learn the shared representation S (report Sec. III-A, eq. 5-7).

Logged with dvclive (see stages/_driver.py): loss/total, mi/global, mi/local (the MI estimates it
maximises), loss/l1, loss/classifier, and acc_wide/shared/<factor>, the online classifiers' accuracy on
test images. With online_earlier also loss/classifier_earlier and acc_earlier/shared/<factor>: the earlier
implementations' online protocol (softmax before the cross-entropy, accuracy on training batches).
"""

from __future__ import annotations

from pathlib import Path

import typer

from dismi.train import training
from stages import _driver
from stages import params as P


def main(
    pairs: Path = _driver.PAIRS,
    model: Path = typer.Option(..., help="Shared encoder model file to write."),
    checkpoints: Path = _driver.CHECKPOINTS,
    live: Path = _driver.LIVE,
    params: Path = _driver.PARAMS,
) -> None:
    with _driver.start(P.TrainShared, params, pairs, inputs=[], model=model, checkpoints=checkpoints, live=live) as (
        cfg,
        device,
        data,
        data_sha256,
    ):
        trainer = training.SharedTrainer(**cfg.trainer_args(), device=device)
        _driver.train(
            trainer,
            data,
            cfg,
            data_sha256=data_sha256,
            model=model,
            checkpoints=checkpoints,
            live=live,
            module=__name__,
        )
