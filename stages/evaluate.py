"""Stage 5: held-out probe accuracies of S and E, distance to ideal, retrieval, S-E dependence; JSON + Markdown.

Every snapshot of both encoders is encoded once; then each probe kind trains one bank over all of them
(dismi.eval.probes) and each critic kind one bank over E's snapshots and the calibration (dismi.eval.dependence).
Progress (dismi.util.progress.phase): one line per encoded snapshot and per epoch of each bank, with the time left.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import typer

from dismi.data.factors import FACTORS
from dismi.data.pairfile import TEST, TRAIN, PairData, load_pairs
from dismi.data.results import EARLIER, ONLINE, PROBES, REPRESENTATIONS, Results
from dismi.eval import dependence
from dismi.eval.metrics import (
    STANDARD_STEPS,
    Codes,
    EvalSettings,
    probe_metrics,
    retrieval_examples,
    retrieval_metric,
    standard_metrics,
)
from dismi.model.networks import encode
from dismi.train.modelfile import check_model, load_snapshots
from dismi.util import devices, progress
from dismi.util.errors import DismiError
from dismi.util.files import file_sha256, guard_outputs, write_text_atomic
from dismi.util.progress import duration
from stages import params as P

N_SHOWN = 6  # retrieval queries kept in retrieval.json for the figure


def _online(path: Path, representation: str, probe: str) -> dict[str, float]:
    """Last online test-batch accuracies of one training stage's `probe` classifiers, from its dvclive metrics.json."""
    stage, prefix = f"train-{representation}", ONLINE[probe].online_prefix
    try:
        acc = json.loads(path.read_text())[prefix][representation]
        return {f: float(acc[f]) for f in FACTORS}
    except FileNotFoundError:
        raise DismiError(f"training log {path} not found: run the {stage} stage first") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DismiError(
            f"training log {path} has no {prefix}/{representation}/<factor> values ({e!r}): rerun the {stage} stage"
        ) from None


def _codes(encoder, representation: str, data: PairData, device: str) -> Codes:
    # Every image belongs to a train or a test pair, so encode each once and split the rows.
    codes = encode(encoder, data.images, device=device)  # (M, D)
    train, test = data.image_rows(TRAIN), data.image_rows(TEST)
    return Codes(
        representation, codes[train], data.classes[train], codes[test], data.classes[test], tuple(data.n_values())
    )


def _examples(data: PairData, queries: np.ndarray, neighbours: dict[str, np.ndarray], k: int) -> dict:
    """A few queries with their neighbours by S and by E, as pairs-file rows and Shapes3D indices."""
    test_rows = data.image_rows(TEST)

    def where(test_idx: np.ndarray) -> dict:
        rows = test_rows[test_idx]
        return {"rows": rows.tolist(), "source": data.source[rows].tolist()}

    return {
        "k": k,
        "queries": [
            {
                "row": int(test_rows[q]),
                "source": int(data.source[test_rows[q]]),
                **{rep: where(n[i]) for rep, n in neighbours.items()},
            }
            for i, q in enumerate(queries)
        ],
    }


def _dependence(
    s_final: Codes, e_codes: list[tuple[int | None, Codes]], settings: EvalSettings
) -> tuple[dict, dict[str, list[float]]]:
    """Fresh critics of each kind on (final S, E) for every E snapshot and a calibration (E shuffled)
    -> (the final E's figures, {critic: held-out loss per E snapshot})."""
    pairs = [(s_final.train, e.train, s_final.test, e.test) for _, e in e_codes]
    pairs.append(dependence.calibration(*pairs[-1], seed=settings.seed))
    out: dict = {"chance_loss": dependence.CHANCE_LOSS}
    per_snapshot: dict[str, list[float]] = {}
    for critic in dependence.CRITICS:
        what = f"evaluate: {critic} critics on {len(pairs) - 1} (S, E) pair(s) + calibration: epoch"
        with progress.phase(what, settings.critic_epochs, "epoch") as step:
            got = dependence.critic_losses(
                pairs,
                critic,
                epochs=settings.critic_epochs,
                lr=settings.probe_lr,
                batch_size=settings.probe_batch_size,
                seed=settings.seed,
                device=settings.device,
                on_epoch=step,
            )
        *per_snapshot[critic], calibrated = got
        out[critic] = {
            "loss": per_snapshot[critic][-1],
            "jsd": dependence.implied_jsd(per_snapshot[critic][-1]),
            "calibration_loss": calibrated,
            "calibration_jsd": dependence.implied_jsd(calibrated),
        }
    return out, per_snapshot


def main(
    pairs: Path = typer.Option(..., help="pair dataset (HDF5) from the pairs stage"),
    shared: Path = typer.Option(..., help="shared encoder from train-shared"),
    exclusive: Path = typer.Option(..., help="exclusive encoder from train-exclusive"),
    online_shared: Path = typer.Option(..., help="train-shared's dvclive metrics.json"),
    online_exclusive: Path = typer.Option(..., help="train-exclusive's dvclive metrics.json"),
    metrics: Path = typer.Option(..., help="output: nested JSON of every figure"),
    retrieval: Path = typer.Option(..., help="output: a few retrieval queries and their neighbours"),
    importance: Path = typer.Option(
        ..., help="output: DCI's importance matrix over [S, E] (code dimensions x factors)"
    ),
    curves: Path = typer.Option(
        ..., help="output: held-out accuracy of every model snapshot, one row per (representation, probe, iteration)"
    ),
    critic_curves: Path = typer.Option(..., help="output: each critic's held-out loss on every E snapshot (JSON rows)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    # A failed run must not leave older results looking current.
    guard_outputs(
        [pairs, shared, exclusive, online_shared, online_exclusive, params],
        [metrics, retrieval, curves, importance, critic_curves],
    )
    cfg = P.Evaluate.load(params)
    with devices.claim(cfg.device) as claim:  # a GPU of its own, or its share of the cores
        threads = claim.bind()
        device = claim.device
        settings = EvalSettings(**asdict(cfg) | {"device": str(device), "jobs": threads})
        logs = (("shared", online_shared), ("exclusive", online_exclusive))
        online = {probe: {rep: _online(path, rep, probe) for rep, path in logs} for probe in PROBES}
        # The earlier implementations' protocol (online_earlier: softmax before the cross-entropy, accuracy
        # on training batches), when both stages logged it: beside the correct figures, for comparison.
        if all(EARLIER.online_prefix in json.loads(path.read_text()) for _, path in logs):
            online["earlier"] = {rep: _online(path, rep, "earlier") for rep, path in logs}
        start = time.perf_counter()
        data = load_pairs(pairs)
        data_sha256 = file_sha256(pairs)
        snapshots = {}
        for rep, model_path in zip(REPRESENTATIONS, (shared, exclusive)):
            snapshots[rep], meta = load_snapshots(model_path, device)
            check_model(meta, model_path, rep, data_sha256)
        n_snapshots = sum(map(len, snapshots.values()))
        typer.echo(
            f"evaluate: read {len(data.images):,} images and {n_snapshots} encoder snapshots; "
            f"encoding every image with each ({duration(time.perf_counter() - start)} so far)"
        )
        # Every snapshot encoded once, in training order; the last of each representation is the final encoder.
        codes: dict[str, list[tuple[int | None, Codes]]] = {rep: [] for rep in REPRESENTATIONS}
        with progress.phase("evaluate: encoding every image: snapshot", n_snapshots, "snapshot") as step:
            for rep in REPRESENTATIONS:
                for it, encoder in snapshots[rep]:
                    codes[rep].append((it, _codes(encoder, rep, data, str(device))))
                    step(sum(map(len, codes.values())), f"{rep} at iteration {it}")
        final = {rep: codes[rep][-1][1] for rep in REPRESENTATIONS}
        # First: a bad retrieval_k fails fast. Queries depend only on the seed and the test set, so S and E share them.
        retrieved, shown = {}, {}
        for rep in REPRESENTATIONS:
            retrieved[rep] = retrieval_metric(final[rep], settings)
            queries, shown[rep] = retrieval_examples(final[rep], settings, N_SHOWN)
        every = [(rep, it, c) for rep in REPRESENTATIONS for it, c in codes[rep]]
        held_out = {}
        banks = len({c.train.shape[1] for _, _, c in every})  # one bank per code size (S and E may differ)
        for probe in PROBES:
            what = f"evaluate: {probe} probes on {len(every)} snapshots: epoch"
            with progress.phase(what, banks * settings.probe_epochs, "epoch") as step:
                done = itertools.count(1)  # epochs of every bank so far: each bank counts its own from 1
                held_out[probe] = probe_metrics(
                    [c for _, _, c in every], settings, probe, on_epoch=lambda _epoch: step(next(done))
                )
        dep, critic_losses = _dependence(final["shared"], codes["exclusive"], settings)
        what = "evaluate: standard metrics (DCI forests on [S, E], S, E; MIG) on the final codes: step"
        with progress.phase(what, STANDARD_STEPS, "step") as step:
            standard, importance_matrix = standard_metrics(final["shared"], final["exclusive"], settings, on_step=step)
        # Held-out figures against training iterations, from the snapshots the model files carry: a plot file,
        # so evaluate.json's keys do not depend on the run's length.
        rows = [
            {"representation": rep, "probe": probe, "iteration": it, **held_out[probe][i]}
            for i, (rep, it, _) in enumerate(every)
            for probe in PROBES
        ]
        # Rows of their own file: DVC draws a plot file only when all its rows share their fields.
        critic_rows = [
            {"iteration": it, **{c: v[k] for c, v in critic_losses.items()}}
            for k, (it, _) in enumerate(codes["exclusive"])
        ]
        last = {rep: max(i for i, (r, _, _) in enumerate(every) if r == rep) for rep in REPRESENTATIONS}
        results = Results(
            held_out={probe: {rep: held_out[probe][last[rep]] for rep in REPRESENTATIONS} for probe in PROBES},
            online=online,
            retrieval=retrieved,
            dependence=dep,
        )
        examples = _examples(data, queries, shown, settings.retrieval_k)
        write_text_atomic(metrics, json.dumps(results.to_json() | {"standard": standard}, indent=2) + "\n")
        write_text_atomic(curves, json.dumps(rows, indent=1) + "\n")
        write_text_atomic(importance, json.dumps(importance_matrix) + "\n")
        write_text_atomic(critic_curves, json.dumps(critic_rows, indent=1) + "\n")
        write_text_atomic(retrieval, json.dumps(examples, indent=2) + "\n")
        dep, paper, wide = results.dependence, results.held_out["paper"], results.held_out["wide"]
        typer.echo(
            f"distance to ideal, paper probe: S {paper['shared']['distance_to_ideal']:.4f}, "
            f"E {paper['exclusive']['distance_to_ideal']:.4f}; wide probe: "
            f"S {wide['shared']['distance_to_ideal']:.4f}, "
            f"E {wide['exclusive']['distance_to_ideal']:.4f}; critics' held-out loss (2 ln 2 = "
            f"{dep['chance_loss']:.3f} independent): paper {dep['paper']['loss']:.3f} "
            f"(calibration {dep['paper']['calibration_loss']:.3f}), separable {dep['separable']['loss']:.3f} "
            f"(calibration {dep['separable']['calibration_loss']:.3f}); "
            f"DCI disentanglement {standard['dci']['disentanglement']:.3f}, completeness "
            f"{standard['dci']['completeness']:.3f}, MIG {standard['mig']['mig']:.3f}; wrote {metrics}, {retrieval}, {curves}, "
            f"{importance}; {duration(time.perf_counter() - start)}, "
            f"{threads} CPU thread(s)"
        )
