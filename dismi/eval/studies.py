"""Studies over many runs: runs grouped by name, mean and spread over seeds, the lambda_adv curve and
the ablation table (paper Fig. 5, Tables 6-7).

A group is one setting measured several times, its runs differing only in their seed. Runs named
`<group>-seed<k>` are grouped by that name; any other run (DVC's generated names, as a sweep such as
`dvc exp run --queue -S 'seed=range(3)' -S 'lambda_adv=0,0.1'` gives them) by its params but the seed,
the group named by the params in which it differs from the commit it ran from (`lambda_adv=0.1`).
Pure functions of plain dicts, so a notebook can use them on any list of runs; `stages/results.py`
feeds them from DVC's experiments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dismi.data.factors import FACTORS, SHARED_FACTORS, SIZES, chance_level
from dismi.data.results import HELD_OUT_FIGURES, PROBES, REPRESENTATIONS, SYMBOL, Results
from dismi.eval.published import PAPER_ACCURACY, PAPER_DISTANCE, REPORT_ACCURACY, REPORT_DISTANCE
from dismi.eval.tables import markdown
from dismi.util.errors import DismiError

SEED_SUFFIX = re.compile(r"^(?P<group>.+)-seed(?P<seed>\d+)$")
CRITIC_FIGURES = ("loss", "calibration_loss")  # of each fresh critic (dismi.eval.dependence), when measured
CRITIC_CURVE = re.compile(r"critic_(?P<critic>\w+?)_loss")  # a curves.json field: a critic's loss on that E snapshot
GROUP = "group"  # the table column naming a run's group
CHANCE_D_LOSS = 4 * np.log(2)  # the training D's loss at chance: 2 ln 2 on each of its two views


@dataclass(frozen=True)
class Run:
    name: str
    params: Mapping  # params.yaml as the run saw it
    metrics: Mapping  # its evaluate.json, nested
    base: Mapping | None = None  # the params of the commit it ran from, where known: names a params group
    curves: Sequence[Mapping] = ()  # its curves.json rows (held-out figures of each encoder snapshot), if read
    training: Mapping[str, float] = field(default_factory=dict)  # its train stages' last logged figures


@dataclass(frozen=True)
class Summary:
    group: str
    runs: tuple[str, ...]
    params: dict  # the params every run of the group shares
    mean: dict[str, float]  # "paper/shared/scale" -> mean over runs (fractions)
    std: dict[str, float]  # sample standard deviation (0 for a single run: no spread; tables print no ±)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def spread(self) -> dict[str, float] | None:
        """`std`, or None for a single run, which has no spread to show."""
        return self.std if self.n > 1 else None


def group_of(name: str) -> str:
    """`profile-seed2` -> `profile`; a name without a seed suffix is a group of its own."""
    m = SEED_SUFFIX.match(name)
    return m["group"] if m else name


def _flat(node, prefix: str) -> dict[str, float]:
    """A nested mapping's numbers as {"prefix/key/...": value} (evaluate.json's standard metrics)."""
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return {prefix: float(node)}
    if isinstance(node, Mapping):
        return {k: v for key, child in node.items() for k, v in _flat(child, f"{prefix}/{key}").items()}
    return {}


def figures(metrics: Mapping) -> dict[str, float] | None:
    """evaluate.json (either layout: dismi.data.results) -> {"probe/representation/figure": value}, plus
    {"dependence/critic/figure": value} when the critics were measured; None when a held-out figure is missing."""
    try:
        results = Results.from_json(metrics, complete=False)
    except DismiError:
        return None
    out = {
        f"{p}/{rep}/{f}": v
        for p, by_rep in results.held_out.items()
        for rep, figs in by_rep.items()
        for f, v in figs.items()
    }
    for critic, figs in (results.dependence or {}).items():
        if isinstance(figs, Mapping) and all(isinstance(figs.get(f), (int, float)) for f in CRITIC_FIGURES):
            out.update({f"dependence/{critic}/{f}": float(figs[f]) for f in CRITIC_FIGURES})
    out.update(_flat(metrics.get("standard"), "standard"))
    return out


def curve_figures(curves: Sequence[Mapping]) -> dict[str, float]:
    """curves.json rows -> {"curve/probe/representation/iteration/figure": value} and, from the rows'
    critic_<critic>_loss fields,
    {"curve/dependence/critic/iteration/loss": value}; empty when neither was saved."""
    out = {
        f"curve/{row['probe']}/{row['representation']}/{int(row['iteration'])}/{f}": float(row[f])
        for row in curves
        for f in HELD_OUT_FIGURES
        if isinstance(row.get(f), (int, float))
    }
    for row in curves:
        for key, v in row.items():
            m = CRITIC_CURVE.fullmatch(key)
            if m and isinstance(v, (int, float)):
                out[f"curve/dependence/{m['critic']}/{int(row['iteration'])}/loss"] = float(v)
    return out


def run_figures(run: Run) -> dict[str, float] | None:
    """Every figure of a run a study summarises: figures(), its curves and its training figures
    ("training/<name>"); None when a held-out figure is missing."""
    out = figures(run.metrics)
    if out is None:
        return None
    return out | curve_figures(run.curves) | {f"training/{k}": float(v) for k, v in run.training.items()}


def check_seed(run: Run) -> None:
    """A run named `<group>-seed<k>` must have run with seed k: `dvc exp run` in the workspace starts
    from the workspace's params, so a forgotten `-S seed=k` silently repeats the previous seed."""
    m = SEED_SUFFIX.match(run.name)
    if m and "seed" in run.params and float(run.params["seed"]) != float(m["seed"]):
        raise DismiError(
            f"experiment {run.name} ran with seed={run.params['seed']}, not {m['seed']}: "
            f"remove it (dvc exp remove {run.name}) and rerun it with -S seed={m['seed']}"
        )


def _value(v) -> str:
    """A param as a group name shows it: 0.1, 3 (DVC reports whole numbers as 3.0), True, mean."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def group_key(run: Run, ignore: Sequence[str] = ("seed",)) -> tuple:
    """("name", group) for a run named `<group>-seed<k>`; else ("params", its params but `ignore`)."""
    m = SEED_SUFFIX.match(run.name)
    if m:
        return ("name", m["group"])
    return ("params", json.dumps({k: v for k, v in run.params.items() if k not in ignore}, sort_keys=True, default=str))


def _params_group_name(run: Run, ignore: Sequence[str], varying: Sequence[str]) -> str:
    """The params in which a group's runs differ from the commit they ran from (else, that commit not
    known, from the other params groups), `k=v` joined by spaces; the first run's name if none."""
    if run.base is not None:
        keys = [k for k in run.params if k not in ignore and run.base.get(k) != run.params[k]]
    else:
        keys = [k for k in varying if k in run.params]
    return " ".join(f"{k}={_value(run.params[k])}" for k in keys) or run.name


def summarise(runs: Sequence[Run], ignore: Sequence[str] = ("seed",)) -> list[Summary]:
    """One Summary per group (group_key: by name, else by the params but `ignore`), in order of first
    appearance; runs without every figure are left out, and a group keeps the figures all its runs have."""
    by_key: dict[tuple, list[tuple[Run, dict]]] = {}
    for run in runs:
        check_seed(run)
        figs = run_figures(run)
        if figs is not None:
            by_key.setdefault(group_key(run, ignore), []).append((run, figs))
    param_groups = [members[0][0].params for (how, _), members in by_key.items() if how == "params"]
    varying = sorted(
        {
            k
            for p in param_groups
            for k in p
            if k not in ignore and len({json.dumps(q.get(k), default=str) for q in param_groups}) > 1
        }
    )
    groups: dict[str, list[Run]] = {}
    rows = []  # one per run: its group, then its figures
    for (how, name), members in by_key.items():
        if how == "params":
            name = _params_group_name(members[0][0], ignore, varying)
        if name in groups:  # a params group named as another group: tell them apart by a run's name
            name = f"{name} ({members[0][0].name})"
        groups[name] = [r for r, _ in members]
        rows += [{GROUP: name} | figs for _, figs in members]
    if not rows:
        return []
    # Older rows lack the critics, rows saved without their curves lack those: a group keeps what all have.
    table = pd.DataFrame(rows).groupby(GROUP, sort=False)
    means, stds, counts = table.mean(), table.std(ddof=1), table.count()
    out = []
    for group, members in groups.items():
        every = counts.columns[counts.loc[group] == len(members)]
        mean, std = means.loc[group, every], stds.loc[group, every].fillna(0.0)  # a single run: no spread
        shared = {k: v for k, v in members[0].params.items() if all(r.params.get(k) == v for r in members)}
        out.append(Summary(group, tuple(r.name for r in members), shared, mean.to_dict(), std.to_dict()))
    return out


def _pm(s: Summary, key: str, scale: float = 100.0, digits: int = 1) -> str:
    """`mean ± std`; a single run's value alone: one run has no spread, and "± 0.0" would claim one."""
    value = f"{scale * s.mean[key]:.{digits}f}"
    return value if s.spread is None else f"{value} ± {scale * s.spread[key]:.{digits}f}"


def _over(s: Summary) -> str:
    return "one run, no spread" if s.n == 1 else f"mean ± std over {s.n} runs"


def standard_table(s: Summary) -> str:
    """Markdown: the standard metrics (DCI, MIG over [S, E]; per factor its importance share in E, its MIG
    gap, the DCI forests' held-out accuracy on S alone and on E alone), mean ± std over the runs."""
    head = ", ".join(
        f"{name} {_pm(s, f'standard/{key}', 1, 3)}"
        for name, key in (
            ("DCI disentanglement", "dci/disentanglement"),
            ("completeness", "dci/completeness"),
            ("informativeness", "dci/informativeness"),
            ("MIG", "mig/mig"),
        )
    )
    rows = [
        [
            f,
            _pm(s, f"standard/importance_share/exclusive/{f}"),
            _pm(s, f"standard/mig/{f}", 1, 3),
            _pm(s, f"standard/informativeness/shared/{f}"),
            _pm(s, f"standard/informativeness/exclusive/{f}"),
        ]
        for f in FACTORS
    ]
    return (
        f"\nStandard metrics on held-out codes over [S, E], {_over(s)}: {head}.\n\n"
        + markdown(["factor", "importance in E (%)", "MIG gap", "DCI accuracy on S (%)", "on E (%)"], rows)
        + "\n"
    )


def summary_table(s: Summary) -> str:
    """Markdown: mean ± std over the group's runs of every held-out figure, beside the paper and the report;
    then the fresh critics' held-out loss on (S, E), when the runs measured it."""
    cols = [(p, rep) for rep in REPRESENTATIONS for p in PROBES]
    header = [
        "factor",
        *(f"{SYMBOL[r]} {PROBES[p].label}" for p, r in cols),
        "paper S",
        "paper E",
        "report S",
        "report E",
    ]
    rows = [
        [
            f,
            *(_pm(s, f"{p}/{r}/{f}") for p, r in cols),
            *(f"{100 * PAPER_ACCURACY[r][f]:.2f}" for r in REPRESENTATIONS),
            *(f"{100 * REPORT_ACCURACY[r][f]:.2f}" for r in REPRESENTATIONS),
        ]
        for f in FACTORS
    ]
    d = "distance_to_ideal"
    rows.append(
        [
            "distance to ideal",
            *(_pm(s, f"{p}/{r}/{d}", 1, 3) for p, r in cols),
            *(f"{PAPER_DISTANCE[r]:.4f}" for r in REPRESENTATIONS),
            f"{REPORT_DISTANCE['shared']:.3f}",
            f"{REPORT_DISTANCE['exclusive']:.2f}",
        ]
    )
    out = (
        f"`{s.group}`: {s.n} run(s) ({', '.join(s.runs)}); held-out accuracy (%), {_over(s)}.\n\n"
        + markdown(header, rows)
        + "\n"
    )
    if "standard/dci/disentanglement" in s.mean:
        out += standard_table(s)
    critics = sorted({k.split("/")[1] for k in s.mean if k.startswith("dependence/")})
    if critics:
        out += (
            "\nS-E dependence: fresh critics' held-out loss (2 ln 2 = 1.386 when S and E are independent), "
            f"{_over(s)}.\n\n"
            + markdown(
                ["critic", "loss", "calibration loss"],
                [[c, *(_pm(s, f"dependence/{c}/{f}", 1, 3) for f in CRITIC_FIGURES)] for c in critics],
            )
            + "\n"
        )
    if "training/adv_discriminator" in s.mean:
        out += (
            f"\nThe training discriminator's last logged loss: {_pm(s, 'training/adv_discriminator', 1, 2)} "
            f"({CHANCE_D_LOSS:.3f} = 4 ln 2 at chance). The encoder plays against this D, so its loss at chance "
            "says the encoder beat it, not that S and E are independent: the fresh critics above measure that.\n"
        )
    return out + curve_tables(s)


def _iterations(s: Summary, prefix: str) -> list[int]:
    return sorted({int(k.split("/")[3]) for k in s.mean if k.startswith(prefix)})


def curve_tables(s: Summary, probe: str = "paper") -> str:
    """Markdown: the `probe`'s held-out accuracy of every encoder snapshot, mean ± std over the group's runs,
    per representation; beside E's, the fresh critics' loss on (final S, that E); empty without curves."""
    out = ""
    critics = sorted({k.split("/")[2] for k in s.mean if k.startswith("curve/dependence/")})
    for rep in REPRESENTATIONS:
        its = _iterations(s, f"curve/{probe}/{rep}/")
        if not its:
            continue
        with_critics = rep == "exclusive" and critics
        head = ["iteration", *FACTORS, "distance to ideal", *(f"{c} critic loss" for c in critics if with_critics)]
        rows = []
        for it in its:
            at = f"curve/{probe}/{rep}/{it}"
            rows.append(
                [
                    f"{it:,}",
                    *(_pm(s, f"{at}/{f}") if f"{at}/{f}" in s.mean else "" for f in FACTORS),
                    _pm(s, f"{at}/distance_to_ideal", 1, 3) if f"{at}/distance_to_ideal" in s.mean else "",
                    *(
                        _pm(s, k, 1, 3) if (k := f"curve/dependence/{c}/{it}/loss") in s.mean else ""
                        for c in critics
                        if with_critics
                    ),
                ]
            )
        out += (
            f"\n{SYMBOL[rep]} of each snapshot of its training: {PROBES[probe].label}'s held-out accuracy (%)"
            + (", the critics' held-out loss (1.386 when independent)" if with_critics else "")
            + f", {_over(s)}.\n\n"
            + markdown(head, rows)
            + "\n"
        )
    return out


def lambda_curve(summaries: Sequence[Summary], prefix: str = "lambda", baseline: str | None = None) -> list[Summary]:
    """The groups named `<prefix>...` that each hold one lambda_adv value, sorted by it (paper Fig. 5).

    The `baseline` group joins them as one more point when no lambda group has its lambda_adv, so the
    profile need not be run twice under two names."""
    chosen = [s for s in summaries if s.group.startswith(prefix) and "lambda_adv" in s.params]
    values = {float(s.params["lambda_adv"]) for s in chosen}
    chosen += [
        s
        for s in summaries
        if chosen and s.group == baseline and "lambda_adv" in s.params and float(s.params["lambda_adv"]) not in values
    ]
    return sorted(chosen, key=lambda s: float(s.params["lambda_adv"]))


def lambda_table(curve: Sequence[Summary]) -> str:
    """Markdown: paper Fig. 5 as figures, one row per lambda_adv (lambda_curve's groups, in its order): E's
    held-out accuracy per factor by the paper probe, both probes' distances, the fresh critics' loss when
    every group measured them, and the training discriminator's, mean ± std over a group's runs."""
    measured = [{k.split("/")[1] for k in s.mean if k.startswith("dependence/")} for s in curve]
    critics = sorted(set.intersection(*measured)) if measured else []
    with_d = all("training/adv_discriminator" in s.mean for s in curve)
    head = [
        "lambda_adv",
        "group",
        "runs",
        *(f"E {f}" for f in FACTORS),
        *(f"E distance ({PROBES[p].label})" for p in PROBES),
        *(f"{c} critic loss" for c in critics),
        *(["training D loss"] if with_d else []),
    ]
    rows = [
        [
            _value(s.params["lambda_adv"]),
            s.group,
            str(s.n),
            *(_pm(s, f"paper/exclusive/{f}") for f in FACTORS),
            *(_pm(s, f"{p}/exclusive/distance_to_ideal", 1, 3) for p in PROBES),
            *(_pm(s, f"dependence/{c}/loss", 1, 3) for c in critics),
            *([_pm(s, "training/adv_discriminator", 1, 2)] if with_d else []),
        ]
        for s in curve
    ]
    chance = ", ".join(
        f"{f} {100 * chance_level(n):.1f}" for f, n in zip(FACTORS, SIZES) if f in SHARED_FACTORS
    )  # E's ideal on the factors a pair shares
    return (
        f"Paper Fig. 5: E's held-out accuracy (%) by the {PROBES['paper'].label}, mean ± std over a group's runs "
        f"(a single run's value alone); ideal: chance on the shared factors ({chance}), 100 on the "
        "hues. Critics: 2 ln 2 = 1.386 when S and E are independent; the training D: "
        f"{CHANCE_D_LOSS:.3f} = 4 ln 2 at chance.\n\n" + markdown(head, rows, numeric_from=3) + "\n"
    )


ABLATED = ("switched", "gamma", "alpha_sh", "beta_sh", "l1_reduce")


def ablation_table(summaries: Sequence[Summary], baseline: str, prefix: str = "ablation") -> str:
    """Markdown: S's held-out accuracies, mean ± std, for the baseline group and the groups named
    `<prefix>...` (paper Tables 6-7: no switching, gamma = 0, alpha = 0, beta = 0; and eq. 6's L1 averaged
    over coordinates, as earlier implementations did)."""
    chosen = [s for s in summaries if s.group == baseline] + [s for s in summaries if s.group.startswith(prefix)]
    head = ["group", "runs", *ABLATED, *(f"S {f}" for f in FACTORS), "S distance"]
    rows = [
        [
            s.group + (" (baseline)" if s.group == baseline else ""),
            str(s.n),
            *(str(s.params.get(k, "varies")) for k in ABLATED),
            *(_pm(s, f"paper/shared/{f}") for f in FACTORS),
            _pm(s, "paper/shared/distance_to_ideal", 1, 3),
        ]
        for s in chosen
    ]
    return (
        "Held-out accuracy (%) of the paper probe on S, mean ± std over a group's runs (a single run's value "
        "alone); ideal: 100 on scale, shape, "
        "orientation, chance on the hues.\n\n" + markdown(head, rows, numeric_from=len(head)) + "\n"
    )
