"""Stage 4: learn the exclusive representation E (report Sec. III-B, eq. 8-10).

The shared encoder comes frozen, in eval mode, from the shared stage's model file. Logged like the
shared stage (see stages/_driver.py: loss/total, mi/global, mi/local, ...), with loss/adv_encoder (the
encoder's adversarial term), loss/adv_discriminator (D's loss) and acc_wide/exclusive/<factor> instead of
loss/l1.
With online_earlier, also loss/classifier_earlier and
acc_earlier/exclusive/<factor>, the earlier implementations' protocol (training batches).
"""

from __future__ import annotations

from pathlib import Path

import typer

from dismi.train import modelfile, training
from dismi.util.files import file_sha256
from stages import _driver
from stages import params as P


def main(
    pairs: Path = _driver.PAIRS,
    shared: Path = typer.Option(..., help="Shared encoder model file (output of train-shared)."),
    model: Path = typer.Option(..., help="Exclusive encoder model file to write."),
    checkpoints: Path = _driver.CHECKPOINTS,
    live: Path = _driver.LIVE,
    params: Path = _driver.PARAMS,
) -> None:
    with _driver.start(
        P.TrainExclusive, params, pairs, inputs=[shared], model=model, checkpoints=checkpoints, live=live
    ) as (cfg, device, data, data_sha256):
        shared_encoder, meta = modelfile.load_model(shared, device)
        modelfile.check_model(meta, shared, "shared", data_sha256)
        trainer = training.ExclusiveTrainer(shared=shared_encoder, **cfg.trainer_args(), device=device)
        _driver.train(
            trainer,
            data,
            cfg,
            data_sha256=data_sha256,
            model=model,
            checkpoints=checkpoints,
            live=live,
            module=__name__,
            shared_sha256=file_sha256(shared),
        )
