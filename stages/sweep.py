"""Not a stage: paper Fig. 5 (E accuracy vs lambda_adv) and the S ablation table (paper Tables 6-7),
read from `dvc exp show --json` (DVC 3.x) after a queue of `dvc exp run -S ...` experiments."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from dismi import plotting
from dismi.errors import DismiError
from dismi.factors import FACTORS
from stages.evaluate import write_text_atomic

METRICS_FILE = "metrics/evaluate.json"
PARAMS_FILE = "params.yaml"
ABLATIONS = ("switched", "gamma", "alpha_sh", "beta_sh")
# Params that may differ from the baseline without making a run another setting: repeats with
# another seed, and bookkeeping that does not change results.
FREE = ("seed", "device", "log_every", "checkpoint_every")


@dataclass(frozen=True)
class Run:
    name: str
    params: dict   # params.yaml as the run saw it
    metrics: dict  # its metrics/evaluate.json, nested


def _params(row: dict) -> dict | None:
    return (((row.get("data") or {}).get("params") or {}).get(PARAMS_FILE) or {}).get("data")


def _name(row: dict, fallback: str | None = None) -> str:
    rev = str(row.get("rev"))
    return row.get("name") or fallback or (rev if rev == "workspace" else rev[:7])


def _complete(metrics: dict | None) -> bool:
    """Whether a run's metrics hold every figure the sweep draws (older or failed runs may not)."""
    return isinstance(metrics, dict) and all(
        isinstance(metrics.get(rep), dict) and all(k in metrics[rep] for k in (*FACTORS, "distance_to_ideal"))
        for rep in ("shared", "exclusive"))


def parse_exp_show(entries: list) -> tuple[dict, list[Run]]:
    """The baseline commit's params and every run with metrics, from `dvc exp show --json`.

    Top-level entries are the workspace and the baseline commit(s); each commit lists its
    experiments under `experiments[].revs[]`. Queued, failed or older runs without every
    figure are left out. The workspace is dropped when a run has its params: after `dvc exp run` it
    repeats the last experiment, and after a reset of params.yaml its metrics may be stale.
    """
    if not isinstance(entries, list):
        raise DismiError("dvc exp show output is not a list of revisions: save it with `dvc exp show --json`")
    rows = [(entry, _name(entry)) for entry in entries]
    rows += [(rev, _name(rev, exp.get("name"))) for entry in entries for exp in entry.get("experiments") or []
             for rev in exp.get("revs") or []]
    rows.sort(key=lambda row: row[1] == "workspace")
    runs = []
    for row, name in rows:
        metrics = (((row.get("data") or {}).get("metrics") or {}).get(METRICS_FILE) or {}).get("data")
        params = _params(row)
        repeat = name == "workspace" and any(r.params == params for r in runs)
        if params and _complete(metrics) and not repeat:
            runs.append(Run(name, params, metrics))
    commits = [e for e in entries if e.get("rev") != "workspace"] or entries
    baseline = _params(commits[0]) if commits else None
    if not baseline or not runs:
        raise DismiError(f"dvc exp show lists no run with {METRICS_FILE} and {PARAMS_FILE}: "
                         "run `dvc repro` and `dvc exp run` first")
    return baseline, runs


def _varies_only(run: Run, baseline: dict, keys: tuple[str, ...]) -> bool:
    allowed = set(keys) | set(FREE)
    return all(run.params.get(k) == baseline.get(k) for k in set(run.params) | set(baseline) if k not in allowed)


def _is_baseline(run: Run, baseline: dict) -> bool:
    return all(run.params.get(k) == baseline.get(k) for k in ABLATIONS)


def lambda_runs(baseline: dict, runs: list[Run]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """lambda_adv (R,) and E's held-out accuracy per factor (R,) of the runs that change only lambda_adv."""
    chosen = sorted((r for r in runs if _varies_only(r, baseline, ("lambda_adv",))),
                    key=lambda r: r.params["lambda_adv"])
    lambdas = np.array([float(r.params["lambda_adv"]) for r in chosen])
    return lambdas, {f: np.array([r.metrics["exclusive"][f] for r in chosen]) for f in FACTORS}


def ablation_table(baseline: dict, runs: list[Run]) -> str:
    """Markdown: S's held-out accuracies for the runs that change only the shared stage's ablation params."""
    chosen = [r for r in runs if _varies_only(r, baseline, ABLATIONS)]
    chosen.sort(key=lambda r: not _is_baseline(r, baseline))  # baseline first, then as dvc lists them
    head = ["run", *ABLATIONS, "seed", *(f"S {f}" for f in FACTORS), "S distance"]
    lines = [
        "Held-out accuracy (%) of a classifier on S per ablation (paper Tables 6-7); "
        f"ideal: 100 on scale, shape, orientation, chance on the hues. Baseline params: "
        + ", ".join(f"{k}={baseline.get(k)}" for k in ABLATIONS) + ".",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for r in chosen:
        s = r.metrics["shared"]
        cells = [r.name + (" (baseline)" if _is_baseline(r, baseline) else ""),
                 *(str(r.params.get(k)) for k in (*ABLATIONS, "seed")),
                 *(f"{100 * s[f]:.2f}" for f in FACTORS), f"{s['distance_to_ideal']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _exp_show() -> str:
    r = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise DismiError(f"`dvc exp show --json` failed ({last}): run inside the DVC repository or pass --json FILE")
    return r.stdout


def main(
    out: Path = typer.Option(..., help="output directory: lambda_adv.png and ablations.md"),
    json_file: Optional[Path] = typer.Option(None, "--json", help="saved `dvc exp show --json` output "
                                                                   "(default: run it here)"),
) -> None:
    fix = "save it with `dvc exp show --json > FILE`"
    try:
        entries = json.loads(json_file.read_text() if json_file else _exp_show())
    except FileNotFoundError:
        raise DismiError(f"--json file {json_file} not found: {fix}") from None
    except json.JSONDecodeError:
        raise DismiError(f"{json_file or 'dvc exp show'} is not JSON: {fix}") from None
    baseline, runs = parse_exp_show(entries)
    lambdas, accuracy = lambda_runs(baseline, runs)
    plotting.save_figure(plotting.lambda_adv_curve(lambdas, accuracy), out / "lambda_adv.png")
    write_text_atomic(out / "ablations.md", ablation_table(baseline, runs))
    typer.echo(f"{len(runs)} runs, {len(lambdas)} on the lambda_adv curve; wrote lambda_adv.png, ablations.md to {out}")
