"""Stage 4: learn the exclusive representation E (report Sec. III-B, eq. 8-10).

The shared encoder comes frozen, in eval mode, from the shared stage's model file. Logged like the
shared stage (see stages/_driver.py: loss/total, mi/global, mi/local, ...), with loss/adv_encoder (the
encoder's adversarial term), loss/adv_discriminator (D's loss) and acc/exclusive/<factor> instead of
loss/l1.
With the independence options (docs/facts.md, "Independence options") also loss/hsic (lambda_hsic > 0)
and loss/d_refresh (d_refresh_every > 0); with online_earlier, loss/classifier_earlier and
acc_earlier/exclusive/<factor>, the earlier implementations' protocol (training batches).
"""
from __future__ import annotations

from pathlib import Path

import typer

from dismi import training
from dismi.errors import DismiError
from dismi.files import file_sha256
from stages import _driver
from stages import params as P


def main(pairs: Path = typer.Option(..., help="Pairs HDF5 file (output of the pairs stage)."),
         shared: Path = typer.Option(..., help="Shared encoder model file (output of train-shared)."),
         model: Path = typer.Option(..., help="Exclusive encoder model file to write."),
         checkpoints: Path = typer.Option(None, help="Directory of resumable checkpoints (kept between runs, "
                                                     "not a DVC output; default $DISMI_CHECKPOINTS, else "
                                                     "~/.cache/dismi/checkpoints)."),
         live: Path = typer.Option(..., help="dvclive directory for losses and online accuracies."),
         params: Path = typer.Option(Path("params.yaml"), help="Params file.")) -> None:
    with _driver.start(P.TrainExclusive, params, pairs, inputs=[shared], model=model, checkpoints=checkpoints,
                       live=live) as (cfg, device, data, data_sha256):
        shared_encoder, meta = training.load_model(shared, device)
        if meta["kind"] != "shared":
            raise DismiError(f"{shared} holds a {meta['kind']} encoder: pass the shared stage's model "
                             "(models/shared.pt)")
        if meta["data_sha256"] != data_sha256:
            raise DismiError(f"{shared} was trained on another pairs file than {pairs}: rerun train-shared "
                             "(dvc repro)")
        trainer = training.ExclusiveTrainer(shared=shared_encoder, **cfg.trainer_args(), device=device)
        _driver.train(trainer, data, cfg, data_sha256=data_sha256, model=model, checkpoints=checkpoints, live=live,
                      module=__name__, shared_sha256=file_sha256(shared))
