"""Not a stage: tables and figures over the DVC experiments of every commit, grouped by name
(`<group>-seed<k>`) or, for any other name (a sweep's generated ones), by their params but the seed
(dismi.eval.studies): mean ± std over seeds, per encoder snapshot (each run's curves.json, read from its
experiment commit) and beside the training discriminator's last loss, paper Fig. 5 (lambda_adv: figures
and a table) and the ablation table (paper Tables 6-7). `--save-rows` keeps the rows it read, curves
included, so that the tables can be remade without the experiments (`--json`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from dismi.data.factors import FACTORS
from dismi.data.results import PROBES
from dismi.eval import plotting, studies
from dismi.util.errors import DismiError
from dismi.util.files import write_text_atomic
from stages import params as P

METRICS_FILE = "metrics/evaluate.json"
PARAMS_FILE = "params.yaml"
CURVES_FILE = "metrics/curves.json"
CRITIC_CURVES_FILE = "metrics/critic_curves.json"
CURVES_COLUMN = f"{CURVES_FILE}:rows"  # not DVC's: the file's rows, added to an experiment's row by _exp_show
TRAINING_FILE = "metrics/train_exclusive/metrics.json"
TRAINING_FIGURES = {"loss.adv_discriminator": "adv_discriminator"}  # column -> name in the study's figures


def _unflatten(flat: dict) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if isinstance(node, dict):
            node[leaf] = value
    return nested


def runs_from_exp_show(rows: list[dict]) -> list[studies.Run]:
    """Named, finished experiments from `dvc.api.exp_show()` rows (flat columns: a column is prefixed with
    its file, `params.yaml:seed`, only where two files share a name), each with the params of the
    baseline row it follows (the commit it ran from). Params are the knobs stages/params.py declares:
    the rows' other columns are metrics, dependencies' hashes and DVC's own (State, Executor, ...)."""
    runs, base = [], None
    for row in rows:
        params, metrics, training = {}, {}, {}
        for key, value in row.items():
            if key == CURVES_COLUMN:
                continue
            file, _, column = key.rpartition(":")
            if file in ("", PARAMS_FILE) and column in P.KNOBS:
                params[column] = value
            if file in ("", METRICS_FILE):
                metrics[column] = value
            if file in ("", TRAINING_FILE) and column in TRAINING_FIGURES and isinstance(value, (int, float)):
                training[TRAINING_FIGURES[column]] = value
        name = row.get("Experiment")
        if row.get("typ") == "baseline":
            base = params if row.get("rev") != "workspace" else None
        if not name or row.get("rev") == "workspace":
            continue
        if row.get("State") not in (None, "Success"):
            # queued, running or failed: DVC shows such a row with its baseline's metrics, not its own
            continue
        curves = row.get(CURVES_COLUMN) or ()
        runs.append(studies.Run(name, params, _unflatten(metrics), base=base, curves=curves, training=training))
    return runs


# Knobs that change no output (checkpoint_every): runs differing only there are one setting.
UNGROUPED = ("seed", *(k.key for k in P.KNOBS.values() if not k.tracked))


def _exp_show() -> list[dict]:
    import dvc.api  # here, so that `python -m stages --help` does not pay for importing DVC
    from dvc.repo import Repo

    try:
        # Every commit's experiments (`dvc exp show --all-commits`), not only HEAD's: a study survives commits.
        # DVC's public API lists no commits with experiments; Repo.experiments.ls (`dvc exp list -A`) does.
        with Repo() as repo:
            baselines = sorted(repo.experiments.ls(all_commits=True))
        rows = dvc.api.exp_show(revs=baselines or None)
        for row in rows:
            if row.get("Experiment") and row.get("State") in (None, "Success") and row.get("rev") != "workspace":
                row[CURVES_COLUMN] = _curves_at(row["rev"])
        return rows
    except DismiError:
        raise
    except Exception as e:  # DVC's own errors: not a repo, no commits, ...
        raise DismiError(
            f"dvc.api.exp_show failed ({type(e).__name__}: {e}): run inside the DVC repository, after `dvc exp run`"
        ) from None


def _read_at(rev: str, path: str) -> list | None:
    """A JSON file as the experiment commit holds it (`cache: false` in dvc.yaml: committed with it)."""
    import dvc.api

    try:
        return json.loads(dvc.api.read(path, rev=rev))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise DismiError(f"{path} of experiment commit {rev} is not JSON ({e}): rerun that experiment") from None


def _curves_at(rev: str) -> list[dict] | None:
    """The experiment's curves.json rows, each critic's loss per E snapshot added as rows with
    critic_<critic>_loss fields (studies.curve_figures); None where it has none (snapshot_every 0)."""
    rows = _read_at(rev, CURVES_FILE)
    if rows is None:
        return None
    return rows + [
        {"representation": "exclusive", "probe": "critic", "iteration": r["iteration"]}
        | {f"critic_{c}_loss": v for c, v in r.items() if c != "iteration"}
        for r in _read_at(rev, CRITIC_CURVES_FILE) or []
    ]


def main(
    out: Path = typer.Option(..., help="output directory: results.md, results.json and the figures"),
    baseline: str = typer.Option("profile", help="group drawn in accuracy_seeds.png and heading the ablations"),
    json_files: list[Path] = typer.Option(
        None,
        "--json",
        help="rows saved by --save-rows (or `dvc.api.exp_show()` rows as JSON); repeat it to join the studies "
        "of several clones (default: ask DVC here)",
    ),
    save_rows: Path = typer.Option(None, help="also save the rows read, each run's curves included, as JSON"),
    lambda_prefix: str = typer.Option(
        "lambda",
        help="groups named <prefix>... (one lambda_adv each) and the baseline make paper Fig. 5: "
        "lambda_adv_{paper,wide}.png and lambda_adv.md",
    ),
) -> None:
    if json_files:
        rows = []
        for json_file in json_files:
            try:
                got = json.loads(json_file.read_text())
            except (FileNotFoundError, json.JSONDecodeError) as e:
                got = e
            if not isinstance(got, list):
                raise DismiError(
                    f"--json {json_file} is not a readable JSON list of rows ({type(got).__name__}): "
                    "save it with `python -m stages results --save-rows FILE` in the repository of the experiments"
                )
            rows += got
    else:
        rows = _exp_show()
    summaries = studies.summarise(runs_from_exp_show(rows), ignore=UNGROUPED)
    if not summaries:
        raise DismiError(
            f"no experiment has every figure of {METRICS_FILE}: run `dvc exp run -n <group>-seed<k>` "
            "or a sweep (`dvc exp run --queue -S 'seed=range(3)'`) first (see README, Reproduction)"
        )
    wrote = ["results.md", "results.json"]
    if save_rows is not None:
        write_text_atomic(save_rows, json.dumps(rows, default=str) + "\n")
    write_text_atomic(out / "results.md", "\n".join(studies.summary_table(s) for s in summaries))
    write_text_atomic(
        out / "results.json",
        json.dumps(
            [
                {
                    "group": s.group,
                    "runs": list(s.runs),
                    "params": s.params,
                    "mean": s.mean,
                    "std": s.spread,
                }
                for s in summaries
            ],
            indent=1,
            default=str,
        )
        + "\n",
    )
    by_name = {s.group: s for s in summaries}
    if baseline in by_name:
        b = by_name[baseline]
        plotting.save_figure(plotting.accuracy_over_seeds(b.mean, b.std, b.n, baseline), out / "accuracy_seeds.png")
        wrote.append("accuracy_seeds.png")
    curve = studies.lambda_curve(summaries, prefix=lambda_prefix, baseline=baseline)
    if curve:
        write_text_atomic(out / "lambda_adv.md", studies.lambda_table(curve))
        wrote.append("lambda_adv.md")
        lambdas = np.array([float(s.params["lambda_adv"]) for s in curve])
        for probe in PROBES:
            mean = {f: np.array([s.mean[f"{probe}/exclusive/{f}"] for s in curve]) for f in FACTORS}
            std = {f: np.array([s.std[f"{probe}/exclusive/{f}"] for s in curve]) for f in FACTORS}
            plotting.save_figure(plotting.lambda_adv_curve(lambdas, mean, std, probe), out / f"lambda_adv_{probe}.png")
            wrote.append(f"lambda_adv_{probe}.png")
    if any(s.group.startswith("ablation") for s in summaries):
        write_text_atomic(out / "ablations.md", studies.ablation_table(summaries, baseline))
        wrote.append("ablations.md")
    typer.echo(
        f"{len(summaries)} group(s) over {sum(s.n for s in summaries)} run(s); wrote {', '.join(wrote)} to {out}"
        + (f"; the rows read to {save_rows}" if save_rows is not None else "")
    )
