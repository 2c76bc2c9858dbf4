"""Stage 4: learn the exclusive representation E (report Sec. III-B, eq. 8-10).

The shared encoder comes frozen, in eval mode, from the shared stage's model file. Logged like
the shared stage (see stages/train_shared.py), with loss/adv_encoder (the encoder's adversarial
term), loss/adv_discriminator (D's loss) and acc/exclusive/<factor> instead of loss/l1.
"""
from __future__ import annotations

from pathlib import Path

import typer

from dismi import training
from dismi.errors import DismiError
from dismi.files import file_sha256, guard_outputs
from dismi.pairfile import load_pairs
from stages import params as P
from stages.train_shared import run

KEYS = ["seed", "width", "exclusive_dim", "batch_size", "lr_ex", "iters_ex", "alpha_ex", "beta_ex", "lambda_adv",
        "log_every", "checkpoint_every", "snapshot_every", "device"]


def main(pairs: Path = typer.Option(..., help="Pairs HDF5 file (output of the pairs stage)."),
         shared: Path = typer.Option(..., help="Shared encoder model file (output of train-shared)."),
         model: Path = typer.Option(..., help="Exclusive encoder model file to write."),
         checkpoint: Path = typer.Option(..., help="Resumable checkpoint (kept between runs)."),
         live: Path = typer.Option(..., help="dvclive directory for losses and online accuracies."),
         params: Path = typer.Option(Path("params.yaml"), help="Params file.")) -> None:
    # A failed run must not leave an older model looking current; the checkpoint and log are kept.
    guard_outputs([pairs, shared, params], [model], kept=[checkpoint, live])
    p = P.load(params, KEYS)
    device = training.resolve_device(p["device"])
    data = load_pairs(pairs)
    data_sha256 = file_sha256(pairs)
    shared_encoder, meta = training.load_model(shared, device)
    if meta["kind"] != "shared":
        raise DismiError(f"{shared} holds a {meta['kind']} encoder: pass the shared stage's model (models/shared.pt)")
    if meta["data_sha256"] != data_sha256:
        raise DismiError(f"{shared} was trained on another pairs file than {pairs}: rerun train-shared (dvc repro)")
    shared_sha256 = file_sha256(shared)
    trainer = training.ExclusiveTrainer(shared=shared_encoder, width=p["width"], dim=p["exclusive_dim"],
                                        alpha=p["alpha_ex"], beta=p["beta_ex"], lambda_adv=p["lambda_adv"],
                                        lr=p["lr_ex"], seed=p["seed"], device=device)
    run(trainer, data, iters=p["iters_ex"], p=p, checkpoint=checkpoint, live=live,
        fingerprint={"params": p, "data_sha256": data_sha256, "shared_sha256": shared_sha256,
                     "device": device.type})
    training.save_model(model, trainer.model.encoder, "exclusive", p, data_sha256, iteration=trainer.iteration,
                        snapshots=trainer.snapshots, shared_sha256=shared_sha256)
    typer.echo(f"{model}: exclusive encoder after {trainer.iteration} iterations")
