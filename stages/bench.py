"""Not a stage: iterations/s of both training loops as the stages run them, beside the bare forward and
backward of their networks and, with --reference, beside a plain implementation of the same step.

The loop is the stages' own (`Trainer.run`: batch drawn on the device, the exclusive stage's table of
frozen shared codes, step with optimizer updates, loss terms kept on the device; the process's allocator
set as the stages set it), plus the work done every `log_every` iterations (reading the loss terms back,
online accuracies on a test batch), timed apart and spread over its interval. The bare figure is one
step on a fixed batch without the optimizers; their gap is the loop's overhead. The reference
(dismi.model.reference) runs in a fresh process, as a plain script would. Random images: speed does not depend
on content. Weights and learning rates are the report's protocol (docs/protocols/report.yaml).

The device is claimed as the stages claim it (dismi.util.devices): on the CPU the run's share of the cores,
fixed when it starts. `--compete N` runs N single-threaded CPU-bound processes (as `yes > /dev/null` would)
while it measures, to check what a busy machine costs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import typer

from dismi.data.factors import SIZES
from dismi.data.pairfile import TEST, TRAIN, PairData
from dismi.train import training
from dismi.util import allocator, devices
from stages import params as P


def _random_pairs(n_pairs: int, seed: int = 0) -> PairData:
    """n_pairs training pairs and as many test pairs of random images."""
    rng = np.random.default_rng(seed)
    m = 4 * n_pairs
    classes = np.stack([rng.integers(0, s, m) for s in SIZES], axis=1)
    return PairData(
        images=rng.integers(0, 256, (m, 64, 64, 3), dtype=np.uint8),
        classes=classes,
        source=np.arange(m),
        x=np.arange(0, m, 2),
        y=np.arange(1, m, 2),
        split=np.repeat(np.array([TRAIN, TEST], dtype=np.uint8), n_pairs),
    )


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


def _measure(
    trainer: training.Trainer, data: PairData, batch: int, iters: int, warmup: int, rounds: int, log_every: int
) -> tuple[float, float]:
    """-> (loop seconds per iteration with the per-log work spread over log_every iterations,
    bare forward+backward seconds per iteration).

    Loop and bare alternate for `rounds` rounds and each keeps its fastest round, so a burst of load from
    another process on a shared machine does not land on one side only.
    """
    train, test = training.DevicePairs(data, TRAIN, trainer.device), training.DevicePairs(data, TEST, trainer.device)
    rows = train.draw(batch, trainer.batch_gen)
    fixed = (train.images[rows], train.classes[rows], trainer.precomputed(train, rows))
    trainer.run(train, batch, warmup)
    for _ in range(warmup):
        trainer.step(fixed[0], fixed[1], update=False, **fixed[2])
    loop = bare = logging = float("inf")
    for _ in range(rounds):
        loop = min(loop, _seconds(lambda: trainer.run(train, batch, iters), 1, trainer.device) / iters)
        bare = min(
            bare, _seconds(lambda: trainer.step(fixed[0], fixed[1], update=False, **fixed[2]), iters, trainer.device)
        )
        logging = min(
            logging, _seconds(lambda: (trainer.mean_terms(), trainer.online_accuracy(test)), 1, trainer.device)
        )
    return loop + logging / log_every, bare


@contextmanager
def _competitors(n: int) -> Iterator[None]:
    """n single-threaded CPU-bound processes running for the block, like `yes > /dev/null`."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _profile(trainer: training.Trainer, data: PairData, batch: int, iters: int, rows: int) -> str:
    """torch.profiler's table of the ops of `iters` loop iterations, by self time, grouped by input shapes."""
    from torch.profiler import ProfilerActivity, profile

    train = training.DevicePairs(data, TRAIN, trainer.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=True) as prof:
        trainer.run(train, batch, iters)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
    key = "self_cuda_time_total" if trainer.device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages(group_by_input_shape=True).table(
        sort_by=key, row_limit=rows, max_name_column_width=32, max_shapes_column_width=70
    )


def _reference(width: int, batch: int, iters: int) -> float:
    """Seconds per step of dismi.model.reference in a fresh Python process (default allocator and threads)."""
    code = f"from dismi.model.reference import seconds_per_step; print(seconds_per_step({width}, {batch}, {iters}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(
    width: int = typer.Option(64, min=1, help="Encoder base width (64 = the paper's)."),
    dim: int = typer.Option(64, min=1, help="Size of S and of E."),
    batch: int = typer.Option(64, min=2, help="Pairs per iteration."),
    iters: int = typer.Option(5, min=1, help="Timed iterations per round."),
    rounds: int = typer.Option(3, min=1, help="Rounds; each figure is its fastest round."),
    warmup: int = typer.Option(2, min=0, help="Untimed iterations first."),
    log_every: int = typer.Option(250, min=1, help="Iterations between logs, as the param."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    compile: bool = typer.Option(False, help="Compile the steps, as the compile param does."),
    fp32: bool = typer.Option(False, help="On CUDA, float32 throughout instead of the stages' bfloat16 autocast."),
    reference: bool = typer.Option(False, help="Also time dismi.model.reference, the plain shared step (CPU)."),
    profile: int = typer.Option(0, min=0, help="Also print torch.profiler's N most expensive ops of each loop."),
    seed: int = typer.Option(0, help="Seed of the random images and the networks."),
    compete: int = typer.Option(0, min=0, help="Single-threaded CPU-bound processes run beside it."),
) -> None:
    ref_iters = max(iters, 5)  # its median step is its figure
    refs = [_reference(width, batch, ref_iters)] if reference else []  # first: nothing else runs yet
    with devices.claim(device) as claim, _competitors(compete):
        claim.bind()
        _bench(
            claim.device,
            width,
            dim,
            batch,
            iters,
            rounds,
            warmup,
            log_every,
            compile,
            profile,
            seed,
            compete,
            reference,
            refs,
            ref_iters,
            fp32,
        )


def _bench(
    dev: torch.device,
    width: int,
    dim: int,
    batch: int,
    iters: int,
    rounds: int,
    warmup: int,
    log_every: int,
    compile: bool,
    profile: int,
    seed: int,
    compete: int,
    reference: bool,
    refs: list[float],
    ref_iters: int,
    fp32: bool = False,
) -> None:
    allocator.keep_freed_memory()  # as the stages do
    data = _random_pairs(max(2 * batch, 64), seed)
    threads = f", {torch.get_num_threads()} threads" if dev.type == "cpu" else ""
    typer.echo(
        f"device {dev}{threads}; {compete} competing process(es); width {width}, dims {dim}, "
        f"batch {batch} pairs; best of {rounds} rounds of {iters} iterations, after {warmup}; "
        f"log every {log_every}{'; compiled' if compile else ''}"
        f"{'; float32' if fp32 or dev.type != 'cuda' else '; bfloat16 autocast'}"
    )
    # The report's protocol (params.yaml's values where it sets none) at the bench's sizes.
    report = P.read("params.yaml") | P.protocol("report")
    report |= {"width": width, "shared_dim": dim, "exclusive_dim": dim, "seed": seed, "compile": compile}
    shared = training.SharedTrainer(**P.TrainShared.of(report).trainer_args(), device=dev)
    shared.bf16 = not fp32
    rows = []
    for name, trainer in (("shared", shared), ("exclusive", None)):
        if trainer is None:  # built after the shared figures: it freezes the encoder it is given
            trainer = training.ExclusiveTrainer(
                shared=shared.model.encoder, device=dev, **P.TrainExclusive.of(report).trainer_args()
            )
            trainer.bf16 = not fp32
        rows.append((name, *_measure(trainer, data, batch, iters, warmup, rounds, log_every), torch.get_num_threads()))
        if profile:
            typer.echo(f"{name} loop, {iters} iterations:\n{_profile(trainer, data, batch, iters, profile)}")
    if reference:  # again, last: the faster of the two is the baseline, so a drift in the machine's speed
        refs.append(_reference(width, batch, ref_iters))  # during the run does not flatter the loops
    ref = min(refs, default=None)
    typer.echo(
        f"{'stage':<10} {'loop it/s':>10} {'fwd+bwd it/s':>13} {'overhead':>9} {'threads':>8} {'x reference':>12}"
    )
    if ref is not None:
        runs = ", ".join(f"{1 / r:.3f}" for r in refs)
        typer.echo(
            f"{'reference':<10} {1 / ref:>10.3f} {'':>13} {'':>9} {'':>8} {1.0:>12.2f}   (faster of {runs} it/s)"
        )
    for name, loop, bare, n_threads in rows:
        speedup = f"{ref / loop:>12.2f}" if ref is not None else ""
        typer.echo(
            f"{name:<10} {1 / loop:>10.3f} {1 / bare:>13.3f} {100 * (loop / bare - 1):>8.1f}% {n_threads:>8} {speedup}"
        )
