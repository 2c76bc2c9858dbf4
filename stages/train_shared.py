"""Stage 3: learn the shared representation S (report Sec. III-A, eq. 5-7).

Logged with dvclive every `log_every` iterations (means over the interval): loss/total (the
minimised objective), loss/global and loss/local (the eq. 2 MI estimates, X and Y summed: from
-4 ln 2 when nothing is learnt up to 0), loss/l1, loss/classifier, and acc/shared/<factor>, the
online classifiers' accuracy on test images. `run` is the loop both training stages share.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import typer
from dvclive import Live

from dismi import training
from dismi.files import file_sha256, guard_outputs
from dismi.pairfile import PairData, load_pairs
from stages import params as P

KEYS = ["seed", "width", "shared_dim", "batch_size", "lr_sh", "iters_sh", "alpha_sh", "beta_sh", "gamma",
        "l1_reduce", "switched", "log_every", "checkpoint_every", "snapshot_every", "device"]


def _drop_rows_after(live: Path, step: int) -> None:
    """Forget dvclive history logged after `step`: a killed run logged past its last checkpoint."""
    for tsv in (live / "plots" / "metrics").rglob("*.tsv"):
        with open(tsv, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows:  # killed before dvclive wrote its header: let it start the file again
            tsv.unlink()
            continue
        header, *body = rows
        kept = [header] + [r for r in body if int(r[header.index("step")]) <= step]
        with open(tsv, "w", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows(kept)


def run(trainer: training.Trainer, data: PairData, *, iters: int, p: dict, fingerprint: dict,
        checkpoint: Path, live: Path) -> None:
    """Resume from `checkpoint` when it was made with `fingerprint`, else start fresh; train to `iters`."""
    # The networks' shapes too: a checkpoint from code with other layer sizes cannot be resumed.
    fingerprint = fingerprint | {"shapes": {k: list(v.shape) for k, v in trainer.model.state_dict().items()}}
    state = training.load_checkpoint(checkpoint, fingerprint)
    if state is not None:
        trainer.load_state_dict(state)
        _drop_rows_after(live, trainer.iteration)
        typer.echo(f"resuming from iteration {trainer.iteration} ({checkpoint})")
    else:
        typer.echo(f"starting fresh: no checkpoint at {checkpoint} made with these params and data")
    logger = Live(dir=str(live), dvcyaml=None, save_dvc_exp=False, resume=state is not None)
    clock = [time.perf_counter(), trainer.iteration]

    def log(iteration: int, metrics: dict[str, float]) -> None:
        logger.step = iteration
        for name, value in metrics.items():
            logger.log_metric(name, value)
        logger.make_summary()
        now = time.perf_counter()
        rate = (iteration - clock[1]) / (now - clock[0])
        clock[:] = [now, iteration]
        typer.echo(f"iteration {iteration}/{iters}  total {metrics['loss/total']:.4f}  "
                   f"global {metrics['loss/global']:.4f}  local {metrics['loss/local']:.4f}  {rate:.1f} it/s")

    trainer.fit(data, iters=iters, batch_size=p["batch_size"], log_every=p["log_every"],
                checkpoint_every=p["checkpoint_every"], snapshot_every=p["snapshot_every"], log=log,
                save=lambda s: training.save_checkpoint(checkpoint, s, fingerprint))
    logger.end()


def main(pairs: Path = typer.Option(..., help="Pairs HDF5 file (output of the pairs stage)."),
         model: Path = typer.Option(..., help="Shared encoder model file to write."),
         checkpoint: Path = typer.Option(..., help="Resumable checkpoint (kept between runs)."),
         live: Path = typer.Option(..., help="dvclive directory for losses and online accuracies."),
         params: Path = typer.Option(Path("params.yaml"), help="Params file.")) -> None:
    # A failed run must not leave an older model looking current; the checkpoint and log are kept.
    guard_outputs([pairs, params], [model], kept=[checkpoint, live])
    p = P.load(params, KEYS)
    device = training.resolve_device(p["device"])
    data = load_pairs(pairs)
    data_sha256 = file_sha256(pairs)
    trainer = training.SharedTrainer(width=p["width"], dim=p["shared_dim"], alpha=p["alpha_sh"], beta=p["beta_sh"],
                                     gamma=p["gamma"], l1_reduce=p["l1_reduce"], switched=p["switched"],
                                     lr=p["lr_sh"], seed=p["seed"], device=device)
    run(trainer, data, iters=p["iters_sh"], p=p, checkpoint=checkpoint, live=live,
        fingerprint={"params": p, "data_sha256": data_sha256, "device": device.type})
    training.save_model(model, trainer.model.encoder, "shared", p, data_sha256, iteration=trainer.iteration,
                        snapshots=trainer.snapshots)
    typer.echo(f"{model}: shared encoder after {trainer.iteration} iterations")
