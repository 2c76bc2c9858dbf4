"""Stage 6: the PNG figures under --out (FIGURES: learning curves, accuracy table, retrieval, losses, held-out curves)
and the Markdown tables of evaluate's figures (--table)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import typer

from dismi.data.factors import FACTORS
from dismi.data.pairfile import PairData, load_pairs
from dismi.data.results import PROBES, REPRESENTATIONS, Results
from dismi.eval import plotting
from dismi.eval.tables import evaluation_tables
from dismi.util.errors import DismiError
from dismi.util.files import guard_outputs, write_text_atomic

FIGURES = (
    "learning_curves",
    "accuracy_table",
    "retrieval",
    "losses",
    "held_out_curves",
    "importance",
)  # the PNGs main writes under --out


def _curve(tsv: Path) -> plotting.Curve:
    """(steps, values) from one dvclive TSV (columns: [timestamp,] step, <name>)."""
    try:
        with tsv.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        name = tsv.stem
        return (np.array([int(r["step"]) for r in rows]), np.array([float(r[name]) for r in rows]))
    except FileNotFoundError:
        raise DismiError(f"training curve {tsv} not found: run the training stages first (dvc repro)") from None
    except (KeyError, ValueError) as e:
        raise DismiError(f"training curve {tsv} is not a dvclive TSV ({e!r}): rerun its training stage") from None


def _series(live: Path, group: str) -> dict[str, plotting.Curve]:
    """Every curve dvclive logged under `group` (e.g. "loss"), keyed by its logged name ("loss/total"), sorted."""
    tsvs = sorted((live / "plots" / "metrics" / group).glob("*.tsv"))
    if not tsvs:
        raise DismiError(f"no {group} curves under {live}: run its training stage first (dvc repro)")
    return {f"{group}/{t.stem}": _curve(t) for t in tsvs}


def _read_json(path: Path, made_by: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DismiError(f"{path} not found: run the {made_by} stage first") from None
    except json.JSONDecodeError:
        raise DismiError(f"{path} is not valid JSON: rerun the {made_by} stage") from None


def _retrieval_images(data: PairData, examples: dict, path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Query images (Q, 64, 64, 3) and neighbour images per representation (Q, k, 64, 64, 3)."""
    queries = examples["queries"]
    rows = np.array([q["row"] for q in queries])
    neighbours = {rep: np.array([q[rep]["rows"] for q in queries]) for rep in REPRESENTATIONS}
    sources = np.array([q["source"] for q in queries])
    # The rows only mean something in the pairs file evaluate read; the Shapes3D indices prove it.
    if rows.max() >= len(data.source) or not np.array_equal(data.source[rows], sources):
        raise DismiError(f"{path} was written for another pairs file: rerun the evaluate stage")
    return data.images[rows], {rep: data.images[n] for rep, n in neighbours.items()}


def main(
    pairs: Path = typer.Option(..., help="pair dataset (HDF5): images for the retrieval figure, chance levels"),
    live_shared: Path = typer.Option(..., help="train-shared's dvclive directory"),
    live_exclusive: Path = typer.Option(..., help="train-exclusive's dvclive directory"),
    metrics: Path = typer.Option(..., help="evaluate's metrics JSON"),
    retrieval: Path = typer.Option(..., help="evaluate's retrieval JSON"),
    curves: Path = typer.Option(..., help="evaluate's held-out accuracy of each model snapshot (JSON rows)"),
    importance: Path = typer.Option(..., help="evaluate's DCI importance matrix (JSON)"),
    out: Path = typer.Option(..., help="output directory for the PNGs"),
    table: Path = typer.Option(..., help="output: evaluate's accuracy, retrieval and dependence tables in Markdown"),
) -> None:
    # A failed run must not leave older figures looking current.
    guard_outputs(
        [pairs, live_shared, live_exclusive, metrics, retrieval, curves, importance],
        [table, *(out / f"{name}.png" for name in FIGURES)],
    )
    data = load_pairs(pairs)
    n_values = data.n_values()
    lives = {"shared": live_shared, "exclusive": live_exclusive}
    blob = _read_json(metrics, "evaluate")
    results = Results.from_json(blob, str(metrics))
    queries, neighbours = _retrieval_images(data, _read_json(retrieval, "evaluate"), retrieval)
    figures = {
        "learning_curves": plotting.learning_curves(
            {
                rep: {
                    f: _curve(live / "plots" / "metrics" / PROBES["wide"].online_prefix / rep / f"{f}.tsv")
                    for f in FACTORS
                }
                for rep, live in lives.items()
            },
            n_values,
        ),
        "accuracy_table": plotting.accuracy_table(results, n_values),
        "retrieval": plotting.retrieval_grid(queries, neighbours),
        # the minimised terms (loss/...) and the MI estimates the total maximises (mi/global, mi/local)
        "losses": plotting.losses({rep: _series(live, "loss") | _series(live, "mi") for rep, live in lives.items()}),
        "held_out_curves": plotting.held_out_curves(_read_json(curves, "evaluate")),
        "importance": plotting.importance_matrix(_read_json(importance, "evaluate")),
    }
    for name, fig in figures.items():
        plotting.save_figure(fig, out / f"{name}.png")
    write_text_atomic(table, evaluation_tables(results, n_values, blob.get("standard")))
    typer.echo(f"wrote {', '.join(f'{name}.png' for name in figures)} to {out}, and {table}")
