"""Not a stage: the driver both training stages share (guarded outputs, resume, dvclive, progress, model file).

Logged with dvclive every `log_every` iterations (means over the interval): loss/total (the minimised
objective), loss/global and loss/local (the eq. 2 MI estimates, X and Y summed: from -4 ln 2 when
nothing is learnt up to 0), the stage's own terms (loss/l1; loss/adv_encoder, loss/adv_discriminator),
loss/classifier, and acc/<representation>/<factor>, the online classifiers' accuracy on test images.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, TypeVar

import torch
import typer
from dvclive import Live

from dismi import training
from dismi.files import file_sha256, guard_outputs
from dismi.pairfile import PairData, load_pairs
from stages import params as P

T = TypeVar("T", P.TrainShared, P.TrainExclusive)


def start(config: type[T], params: Path, pairs: Path, *, inputs: list[Path], model: Path, checkpoint: Path,
          live: Path) -> tuple[T, torch.device, PairData, str]:
    """Guard the outputs, read the stage's config, load the pairs -> (config, device, pairs, pairs' SHA-256)."""
    # A failed run must not leave an older model looking current; the checkpoint and log are kept.
    guard_outputs([pairs, *inputs, params], [model], kept=[checkpoint, live])
    cfg = config.load(params)
    device = training.resolve_device(cfg.device)
    return cfg, device, load_pairs(pairs), file_sha256(pairs)


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


def train(trainer: training.Trainer, data: PairData, cfg: P.TrainShared | P.TrainExclusive, *, data_sha256: str,
          model: Path, checkpoint: Path, live: Path, **provenance: Any) -> None:
    """Resume from `checkpoint` when it was made with these params, data and networks, else start fresh;
    train to cfg.iters, logging to `live`; write the encoder to `model` with what it was trained with.

    `provenance` (the shared model's SHA-256) joins the checkpoint's fingerprint and the model file.
    """
    p = cfg.params()
    fingerprint = {"params": p, "data_sha256": data_sha256, **provenance, "device": trainer.device.type,
                   # The networks' shapes too: a checkpoint from code with other layer sizes cannot be resumed.
                   "shapes": {k: list(v.shape) for k, v in trainer.model.state_dict().items()}}
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
        typer.echo(f"iteration {iteration}/{cfg.iters}  total {metrics['loss/total']:.4f}  "
                   f"global {metrics['loss/global']:.4f}  local {metrics['loss/local']:.4f}  {rate:.1f} it/s")

    trainer.fit(data, **cfg.fit_args(), log=log, save=lambda s: training.save_checkpoint(checkpoint, s, fingerprint))
    logger.end()
    kind = trainer.representation
    training.save_model(model, trainer.model.encoder, kind, p, data_sha256, iteration=trainer.iteration,
                        snapshots=trainer.snapshots, **provenance)
    typer.echo(f"{model}: {kind} encoder after {trainer.iteration} iterations")
