"""Stage 5: held-out probe accuracies of S and E, distance to ideal, retrieval; JSON + Markdown."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import typer

from dismi.errors import DismiError
from dismi.evaluation import (REPRESENTATIONS, Codes, EvalSettings, markdown_table, probe_metric,
                              retrieval_examples, retrieval_metric)
from dismi.factors import FACTORS
from dismi.networks import encode
from dismi.pairfile import TEST, TRAIN, PairData, load_pairs
from dismi.training import file_sha256, load_model, resolve_device
from stages import params as params_mod

KEYS = ("seed", "probe_epochs", "probe_lr", "probe_batch_size", "retrieval_k", "retrieval_queries", "device")
N_SHOWN = 6  # retrieval queries kept in retrieval.json for the figure


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file renamed into place: never a half-written file under the real name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _online(path: Path, representation: str) -> dict[str, float]:
    """Last online test-batch accuracies of one training stage, from its dvclive metrics.json."""
    stage = f"train-{representation}"
    try:
        acc = json.loads(path.read_text())["acc"][representation]
        return {f: float(acc[f]) for f in FACTORS}
    except FileNotFoundError:
        raise DismiError(f"training log {path} not found: run the {stage} stage first") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DismiError(f"training log {path} has no acc/{representation}/<factor> values ({e!r}): "
                         f"rerun the {stage} stage") from None


def _codes(model_path: Path, representation: str, data: PairData, data_sha256: str, device: str) -> Codes:
    encoder, meta = load_model(model_path, device=device)
    if meta.get("kind") != representation:
        raise DismiError(f"model {model_path} holds a {meta.get('kind')!r} encoder, not {representation!r}: "
                         f"pass the train-{representation} stage's model")
    if meta.get("data_sha256") != data_sha256:
        raise DismiError(f"model {model_path} was trained on another pairs file: rerun train-{representation} "
                         "(dvc repro)")
    # Every image belongs to a train or a test pair, so encode each once and split the rows.
    codes = encode(encoder, data.images, device=device)  # (M, D)
    train, test = data.image_rows(TRAIN), data.image_rows(TEST)
    return Codes(representation, codes[train], data.classes[train], codes[test], data.classes[test],
                 tuple(data.n_values()))


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
    params: Path = typer.Option(Path("params.yaml"), help="params file"),
) -> None:
    for out in (metrics, table, retrieval):
        out.unlink(missing_ok=True)  # a failed run must not leave older results looking current
    p = params_mod.load(params, KEYS)
    device = resolve_device(p["device"])
    settings = EvalSettings(p["seed"], p["probe_epochs"], p["probe_lr"], p["probe_batch_size"],
                            p["retrieval_k"], p["retrieval_queries"], str(device))
    online = {"shared": _online(online_shared, "shared"), "exclusive": _online(online_exclusive, "exclusive")}
    data = load_pairs(pairs)
    data_sha256 = file_sha256(pairs)
    results: dict = {"retrieval": {}, "online": online}
    shown: dict[str, np.ndarray] = {}
    for rep, model_path in zip(REPRESENTATIONS, (shared, exclusive)):
        codes = _codes(model_path, rep, data, data_sha256, str(device))
        results["retrieval"][rep] = retrieval_metric(codes, settings)  # first: a bad retrieval_k fails fast
        results[rep] = probe_metric(codes, settings)
        # Queries depend only on the seed and the test set, so S and E share them.
        queries, shown[rep] = retrieval_examples(codes, settings, N_SHOWN)
    examples = _examples(data, queries, shown, settings.retrieval_k)
    write_text_atomic(metrics, json.dumps({k: results[k] for k in ("shared", "exclusive", "retrieval", "online")},
                                          indent=2) + "\n")
    write_text_atomic(table, markdown_table(results, data.n_values()))
    write_text_atomic(retrieval, json.dumps(examples, indent=2) + "\n")
    typer.echo(f"S distance to ideal {results['shared']['distance_to_ideal']:.4f}, "
               f"E {results['exclusive']['distance_to_ideal']:.4f}; wrote {metrics}, {table}, {retrieval}")
