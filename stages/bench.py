"""Not a stage: iterations/s of both training loops next to the bare forward+backward of their networks.

The loop is the real one (`Trainer.run`: batch drawn on the device, step with optimizer updates,
loss terms kept on the device); the bare figure is the same step on one fixed batch without the
optimizers. Their gap is the loop's overhead. Random images: speed does not depend on content.
The per-`log_every` read-back and test-batch accuracy are not in either figure. Weights and learning
rates are the declared defaults of stages/params.py (the report's).
"""
from __future__ import annotations

import time

import numpy as np
import torch
import typer

from dismi import training
from dismi.factors import SIZES
from dismi.pairfile import TRAIN, PairData
from stages import params as P


def _random_pairs(n_pairs: int, seed: int = 0) -> PairData:
    rng = np.random.default_rng(seed)
    m = 2 * n_pairs
    classes = np.stack([rng.integers(0, s, m) for s in SIZES], axis=1)
    return PairData(images=rng.integers(0, 256, (m, 64, 64, 3), dtype=np.uint8), classes=classes,
                    source=np.arange(m), x=np.arange(n_pairs), y=np.arange(n_pairs, m),
                    split=np.full(n_pairs, TRAIN, dtype=np.uint8))


def _seconds(fn, n: int, device: torch.device) -> float:
    """Wall seconds per call of fn over n calls, the device drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / n


def _measure(trainer: training.Trainer, data: PairData, batch: int, iters: int, warmup: int, rounds: int
             ) -> tuple[float, float]:
    """-> (loop seconds per iteration, bare forward+backward seconds per iteration).

    The two alternate for `rounds` rounds and each keeps its fastest round, so a burst of load from
    another process on a shared machine does not land on one side only.
    """
    train = training.DevicePairs(data, TRAIN, trainer.device)
    images, classes = train.pairs(batch, trainer.batch_gen)
    trainer.run(train, batch, warmup)
    for _ in range(warmup):
        trainer.step(images, classes, update=False)
    loop = bare = float("inf")
    for _ in range(rounds):
        loop = min(loop, _seconds(lambda: trainer.run(train, batch, iters), 1, trainer.device) / iters)
        bare = min(bare, _seconds(lambda: trainer.step(images, classes, update=False), iters, trainer.device))
    return loop, bare


def _report(name: str, trainer: training.Trainer, data: PairData, batch: int, iters: int, warmup: int,
            rounds: int) -> None:
    loop, bare = _measure(trainer, data, batch, iters, warmup, rounds)
    typer.echo(f"{name:<10} {1 / loop:>10.2f} {1 / bare:>13.2f} {100 * (loop / bare - 1):>8.1f}%")


def main(width: int = typer.Option(64, min=1, help="Encoder base width (64 = the paper's)."),
         dim: int = typer.Option(64, min=1, help="Size of S and of E."),
         batch: int = typer.Option(64, min=2, help="Pairs per iteration."),
         iters: int = typer.Option(5, min=1, help="Timed iterations per round."),
         rounds: int = typer.Option(3, min=1, help="Rounds; each figure is its fastest round."),
         warmup: int = typer.Option(2, min=0, help="Untimed iterations first."),
         device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
         compile: bool = typer.Option(False, help="torch.compile the encoders and statistics networks."),
         seed: int = typer.Option(0, help="Seed of the random images and the networks.")) -> None:
    dev = training.resolve_device(device)
    data = _random_pairs(max(2 * batch, 64), seed)
    threads = f", {torch.get_num_threads()} threads" if dev.type == "cpu" else ""
    typer.echo(f"device {dev}{threads}; width {width}, dims {dim}, batch {batch} pairs; "
               f"best of {rounds} rounds of {iters} iterations, after {warmup}{'; compiled' if compile else ''}")
    sizes = {"width": width, "dim": dim, "seed": seed}
    shared = training.SharedTrainer(**P.TrainShared.defaults(**sizes).trainer_args(), device=dev, compile=compile)
    typer.echo(f"{'stage':<10} {'loop it/s':>10} {'fwd+bwd it/s':>13} {'overhead':>9}")
    _report("shared", shared, data, batch, iters, warmup, rounds)
    # Built after the shared figures: it freezes the encoder it is given.
    exclusive = training.ExclusiveTrainer(shared=shared.model.encoder, device=dev, compile=compile,
                                          **P.TrainExclusive.defaults(**sizes).trainer_args())
    _report("exclusive", exclusive, data, batch, iters, warmup, rounds)
