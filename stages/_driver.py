"""Not a stage: the driver both training stages share (guarded outputs, device claim, resume, dvclive,
progress, model file).

Logged with dvclive every `log_every` iterations (means over the interval): loss/total (the minimised
objective), mi/global and mi/local (the eq. 2 MI estimates it maximises, X and Y summed: from -4 ln 2
when nothing is learnt up to 0), the stage's own terms (loss/l1; loss/adv_encoder,
loss/adv_discriminator), loss/classifier, and acc_wide/<representation>/<factor>, the online classifiers'
accuracy on test images.

Checkpoints are not DVC outputs. They live in a per-user directory outside every workspace
(checkpoint_dir(): $DISMI_CHECKPOINTS, else checkpoints/ in the download cache, ~/.cache/dismi), one
file per fingerprint: the params that change results, the pairs file's (and the shared model's)
SHA-256, the device kind, the networks' shapes and the SHA-256 of the stage's code (its import closure
in dismi/ and stages/, dismi.util.sources). No path is in it, so any workspace, `dvc exp run --queue` task
(each runs in a temporary copy of the repository, deleted when it ends) or cluster job of the same
configuration resumes the same checkpoint. DVC's run-cache stays on (a `persist: true` output switches it
off): a configuration trained before is restored from the cache, not retrained, and a queue of
experiments that differ only downstream trains the stage once. A killed run resumes from its checkpoint
when rerun with the same fingerprint, and only then: after a code edit it starts fresh. Two runs of one
fingerprint at once (queue workers) write the same file; training being deterministic, the state at a
given iteration is the same whoever saved it. The checkpoint also carries the dvclive directory as it
was at its iteration, because DVC deletes a stage's (non-persist) outputs before rerunning it; it is
deleted once the model file is written.

Each logged interval is also a dvclive step (`next_step`), the signal the DVC extension of VS Code and
Studio follow live, and one plain line on stdout with the speed and the time left (no carriage returns:
`dvc queue logs` and Slurm logs show lines, not a redrawn bar).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
import typer
from dvclive import Live

from dismi.data.pairfile import PairData, load_pairs
from dismi.train import modelfile, training
from dismi.util import allocator, devices, progress, sources
from dismi.util.files import file_sha256, guard_outputs, write_text_atomic
from stages import params as P

T = TypeVar("T", P.TrainShared, P.TrainExclusive)

# The options both training stages take, declared once.
PAIRS = typer.Option(..., help="Pairs HDF5 file (output of the pairs stage).")
CHECKPOINTS = typer.Option(
    None,
    help="Directory of resumable checkpoints (kept between runs, not a DVC output; default $DISMI_CHECKPOINTS, "
    "else ~/.cache/dismi/checkpoints).",
)
LIVE = typer.Option(..., help="dvclive directory for losses and online accuracies.")
PARAMS = typer.Option(Path("params.yaml"), help="Params file.")
CODE_ROOT = Path(__file__).resolve().parents[1]  # the stage's code: its import closure under here
CODE_PACKAGES = ("dismi", "stages")
CHECKPOINTS_ENV = "DISMI_CHECKPOINTS"


def checkpoint_dir(checkpoints: Path | None = None) -> Path:
    """`checkpoints` when given, else $DISMI_CHECKPOINTS, else checkpoints/ in the per-user download cache
    ($DISMI_CACHE, else $XDG_CACHE_HOME/dismi, else ~/.cache/dismi): per user, outside every workspace,
    because a queue task's workspace and a requeued cluster job's clone are deleted with what is in them."""
    if checkpoints is not None:
        return checkpoints
    if os.environ.get(CHECKPOINTS_ENV):
        return Path(os.environ[CHECKPOINTS_ENV]).expanduser()
    # dismi.data.download.cache_dir()'s rule, not imported: the downloader would join the training stages' code
    # hash (their import closure), and a downloader edit would then discard every checkpoint
    if os.environ.get("DISMI_CACHE"):
        return Path(os.environ["DISMI_CACHE"]).expanduser() / "checkpoints"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dismi" / "checkpoints"


@contextmanager
def start(
    config: type[T], params: Path, pairs: Path, *, inputs: list[Path], model: Path, checkpoints: Path | None, live: Path
) -> Iterator[tuple[T, torch.device, PairData, str]]:
    """Guard the outputs, read the stage's config, claim a device (dismi.util.devices) and this run's share of
    the cores, load the pairs -> (config, device, pairs, pairs' SHA-256); the claim ends with the block."""
    # A failed run must not leave an older model looking current; the checkpoints and log are kept.
    guard_outputs([pairs, *inputs, params], [model], kept=[checkpoint_dir(checkpoints), live])
    cfg = config.load(params)
    allocator.keep_freed_memory()  # a step's large tensors reuse freed memory instead of faulting it in again
    with devices.claim(cfg.device) as claim:
        threads = claim.bind()
        typer.echo(
            f"device {claim.device} ({devices.describe(claim.device)}), {threads} CPU thread(s) for the whole run"
        )
        yield cfg, claim.device, load_pairs(pairs), file_sha256(pairs)


def _live_files(live: Path) -> dict[str, str]:
    """The dvclive directory as {relative path: text}: what a checkpoint carries."""
    return {p.relative_to(live).as_posix(): p.read_text() for p in sorted(live.rglob("*")) if p.is_file()}


def _restore_live(live: Path, files: dict[str, str]) -> None:
    """Put the dvclive directory back as a checkpoint saw it: rows logged after it are forgotten, rows
    DVC deleted before the rerun come back."""
    shutil.rmtree(live, ignore_errors=True)
    for rel, text in files.items():
        write_text_atomic(live / rel, text)


def fingerprint(
    trainer: training.Trainer,
    cfg: P.TrainShared | P.TrainExclusive,
    *,
    data_sha256: str,
    module: str,
    **provenance: Any,
) -> dict:
    """What a checkpoint must have been made with to be resumed: see the module docstring."""
    # The params' device value is left out: the kind it resolved to is below, and auto and cuda agree.
    p = {k: v for k, v in cfg.params().items() if k != "device"}
    code = CODE_ROOT / (module.replace(".", "/") + ".py")
    return {
        "params": p,
        "data_sha256": data_sha256,
        **provenance,
        "device": trainer.device.type,
        # another CPU thread count sums in another order: resuming under it would mix two runs
        "threads": torch.get_num_threads() if trainer.device.type == "cpu" else None,
        "code_sha256": sources.sha256(code, CODE_ROOT, CODE_PACKAGES),
        # the networks' shapes too, as a cheap check of what the code hash already covers
        "shapes": {k: list(v.shape) for k, v in trainer.model.state_dict().items()},
    }


def checkpoint_path(checkpoints: Path, representation: str, fp: dict) -> Path:
    """checkpoints/<representation>-<16 hex digits of the fingerprint>.pt"""
    key = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    return checkpoints / f"{representation}-{key}.pt"


def train(
    trainer: training.Trainer,
    data: PairData,
    cfg: P.TrainShared | P.TrainExclusive,
    *,
    data_sha256: str,
    model: Path,
    checkpoints: Path | None,
    live: Path,
    module: str,
    **provenance: Any,
) -> None:
    """Resume from the checkpoint made with these params, data, code and networks, else start fresh;
    train to cfg.iters, logging to `live`; write the encoder to `model` with what it was trained with.

    `checkpoints`: the checkpoint directory, None for checkpoint_dir()'s per-user default.
    `module` names the stage's module (its __name__): the code whose hash joins the fingerprint.
    `provenance` (the shared model's SHA-256) joins the checkpoint's fingerprint and the model file.
    """
    fp = fingerprint(trainer, cfg, data_sha256=data_sha256, module=module, **provenance)
    checkpoint = checkpoint_path(checkpoint_dir(checkpoints), trainer.representation, fp)
    state = modelfile.load_checkpoint(checkpoint, fp)
    if state is not None:
        trainer.load_state_dict(state)
        _restore_live(live, state.get("live", {}))
        typer.echo(f"resuming from iteration {trainer.iteration} ({checkpoint})")
    else:
        typer.echo(f"starting fresh: no checkpoint made with these params, data and code ({checkpoint})")
    logger = Live(dir=str(live), dvcyaml=None, save_dvc_exp=False, resume=state is not None)
    threads = torch.get_num_threads()  # fixed for the run by its claim (dismi.util.devices)
    with progress.phase("iteration", cfg.iters, "it", initial=trainer.iteration) as step:

        def log(iteration: int, metrics: dict[str, float]) -> None:
            logger.step = iteration  # the rows' step is the iteration; next_step() then signals it
            for name, value in metrics.items():
                logger.log_metric(name, value)
            logger.log_metric("threads", threads, plot=False)  # a constant: in metrics.json, no curve
            logger.next_step()  # summary, and the step-completed signal VS Code and Studio follow
            step(
                iteration,
                f"total {metrics['loss/total']:.4f}  mi global {metrics['mi/global']:.4f}  "
                f"mi local {metrics['mi/local']:.4f}  {threads} thread(s)",
            )

        def save(s: dict) -> None:
            modelfile.save_checkpoint(checkpoint, s | {"live": _live_files(live)}, fp)

        trainer.heartbeat = step  # between logs: never silent for long (training.HEARTBEAT_SECONDS)
        trainer.fit(data, **cfg.fit_args(), log=log, save=save)
    logger.end()
    kind = trainer.representation
    modelfile.save_model(
        model,
        trainer.model.encoder,
        kind,
        cfg.params(),
        data_sha256,
        iteration=trainer.iteration,
        snapshots=trainer.snapshots,
        device=trainer.device,
        threads=threads,
        **provenance,
    )
    checkpoint.unlink(missing_ok=True)  # the model file (and DVC's cache of it) is the result now
    typer.echo(f"{model}: {kind} encoder after {trainer.iteration} iterations, {threads} CPU thread(s)")
