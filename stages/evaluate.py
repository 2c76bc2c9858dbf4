"""Stage 5: held-out probe accuracies of S and E, distance to ideal, retrieval; JSON + Markdown."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import typer

from dismi import devices
from dismi.errors import DismiError
from dismi.evaluation import (REPRESENTATIONS, Codes, EvalSettings, markdown_table, paper_probe_metric,
                              probe_metric, retrieval_examples, retrieval_metric)
from dismi.factors import FACTORS
from dismi.files import file_sha256, guard_outputs, write_text_atomic
from dismi.networks import encode
from dismi.pairfile import TEST, TRAIN, PairData, load_pairs
from dismi.training import ONLINE_PREFIX, load_snapshots
from stages import params as P

N_SHOWN = 6  # retrieval queries kept in retrieval.json for the figure


def _online(path: Path, representation: str, probe: str) -> dict[str, float]:
    """Last online test-batch accuracies of one training stage's `probe` classifiers, from its dvclive metrics.json."""
    stage, prefix = f"train-{representation}", ONLINE_PREFIX[probe]
    try:
        acc = json.loads(path.read_text())[prefix][representation]
        return {f: float(acc[f]) for f in FACTORS}
    except FileNotFoundError:
        raise DismiError(f"training log {path} not found: run the {stage} stage first") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DismiError(f"training log {path} has no {prefix}/{representation}/<factor> values ({e!r}): "
                         f"rerun the {stage} stage") from None


def _check_model(meta: dict, model_path: Path, representation: str, data_sha256: str) -> None:
    if meta.get("kind") != representation:
        raise DismiError(f"model {model_path} holds a {meta.get('kind')!r} encoder, not {representation!r}: "
                         f"pass the train-{representation} stage's model")
    if meta.get("data_sha256") != data_sha256:
        raise DismiError(f"model {model_path} was trained on another pairs file: rerun train-{representation} "
                         "(dvc repro)")


def _codes(encoder, representation: str, data: PairData, device: str) -> Codes:
    # Every image belongs to a train or a test pair, so encode each once and split the rows.
    codes = encode(encoder, data.images, device=device)  # (M, D)
    train, test = data.image_rows(TRAIN), data.image_rows(TEST)
    return Codes(representation, codes[train], data.classes[train], codes[test], data.classes[test],
                 tuple(data.n_values()))


def _curve_rows(representation: str, iteration, results: dict) -> list[dict]:
    return [{"representation": representation, "probe": probe, "iteration": iteration, **acc}
            for probe, acc in results.items()]


def _examples(data: PairData, queries: np.ndarray, neighbours: dict[str, np.ndarray], k: int) -> dict:
    """A few queries with their neighbours by S and by E, as pairs-file rows and Shapes3D indices."""
    test_rows = data.image_rows(TEST)

    def where(test_idx: np.ndarray) -> dict:
        rows = test_rows[test_idx]
        return {"rows": rows.tolist(), "source": data.source[rows].tolist()}

    return {"k": k, "queries": [{"row": int(test_rows[q]), "source": int(data.source[test_rows[q]]),
                                 **{rep: where(n[i]) for rep, n in neighbours.items()}}
                                for i, q in enumerate(queries)]}


def main(
    pairs: Path = typer.Option(..., help="pair dataset (HDF5) from the pairs stage"),
    shared: Path = typer.Option(..., help="shared encoder from train-shared"),
    exclusive: Path = typer.Option(..., help="exclusive encoder from train-exclusive"),
    online_shared: Path = typer.Option(..., help="train-shared's dvclive metrics.json"),
    online_exclusive: Path = typer.Option(..., help="train-exclusive's dvclive metrics.json"),
    metrics: Path = typer.Option(..., help="output: nested JSON of every figure"),
    table: Path = typer.Option(..., help="output: the accuracy and retrieval tables in Markdown"),
    retrieval: Path = typer.Option(..., help="output: a few retrieval queries and their neighbours"),
    curves: Path = typer.Option(..., help="output: held-out accuracy of every model snapshot, one row per "
                                          "(representation, probe, iteration)"),
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    # A failed run must not leave older results looking current.
    guard_outputs([pairs, shared, exclusive, online_shared, online_exclusive, params],
                  [metrics, table, retrieval, curves])
    cfg = P.Evaluate.load(params)
    with devices.claim(cfg.device) as claim:  # a GPU of its own, or its share of the cores
        claim.use()
        device = claim.device
        settings = EvalSettings(**asdict(cfg) | {"device": str(device)})
        online = {probe: {rep: _online(path, rep, probe) for rep, path in
                          (("shared", online_shared), ("exclusive", online_exclusive))} for probe in ("wide", "paper")}
        data = load_pairs(pairs)
        data_sha256 = file_sha256(pairs)
        results: dict = {"retrieval": {}, "paper_probe": {}, "online": online["wide"], "online_paper": online["paper"]}
        rows: list[dict] = []
        shown: dict[str, np.ndarray] = {}
        for rep, model_path in zip(REPRESENTATIONS, (shared, exclusive)):
            snapshots, meta = load_snapshots(model_path, device)
            _check_model(meta, model_path, rep, data_sha256)
            *earlier, (iteration, encoder) = snapshots
            codes = _codes(encoder, rep, data, str(device))
            results["retrieval"][rep] = retrieval_metric(codes, settings)  # first: a bad retrieval_k fails fast
            results[rep] = probe_metric(codes, settings)
            results["paper_probe"][rep] = paper_probe_metric(codes, settings)
            # Queries depend only on the seed and the test set, so S and E share them.
            queries, shown[rep] = retrieval_examples(codes, settings, N_SHOWN)
            # Held-out accuracy against training iterations, from the snapshots the model file carries.
            for it, snap in earlier:
                snap_codes = _codes(snap, rep, data, str(device))
                rows += _curve_rows(rep, it, {"wide": probe_metric(snap_codes, settings),
                                              "paper": paper_probe_metric(snap_codes, settings)})
            rows += _curve_rows(rep, iteration, {"wide": results[rep], "paper": results["paper_probe"][rep]})
        examples = _examples(data, queries, shown, settings.retrieval_k)
        figures = ("shared", "exclusive", "paper_probe", "retrieval", "online", "online_paper")
        write_text_atomic(metrics, json.dumps({k: results[k] for k in figures}, indent=2) + "\n")
        write_text_atomic(curves, json.dumps(rows, indent=1) + "\n")
        write_text_atomic(table, markdown_table(results, data.n_values()))
        write_text_atomic(retrieval, json.dumps(examples, indent=2) + "\n")
        typer.echo(f"distance to ideal, paper probe: S {results['paper_probe']['shared']['distance_to_ideal']:.4f}, "
                   f"E {results['paper_probe']['exclusive']['distance_to_ideal']:.4f}; wide probe: "
                   f"S {results['shared']['distance_to_ideal']:.4f}, "
                   f"E {results['exclusive']['distance_to_ideal']:.4f}; "
                   f"wrote {metrics}, {table}, {retrieval}, {curves}")
