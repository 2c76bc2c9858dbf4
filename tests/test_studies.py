"""Runs grouped by name: mean ± std over seeds, the lambda_adv curve, the ablation table, and the
`results` command on rows in `dvc.api.exp_show()`'s format (DVC 3.x; see also test_pipeline)."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dismi.data.factors import FACTORS
from dismi.eval import studies
from dismi.util.errors import DismiError
from stages.__main__ import app
from stages.results import runs_from_exp_show

REPO = Path(__file__).resolve().parents[1]


def _metrics(value: float) -> dict:
    rep = {**{f: value for f in FACTORS}, "distance_to_ideal": 6 * value}
    return {"held_out": {"paper": {"shared": rep, "exclusive": rep}, "wide": {"shared": rep, "exclusive": rep}}}


def _run(name, value, **params):
    return studies.Run(
        name, {"seed": int(name.rsplit("seed", 1)[-1]) if "-seed" in name else 0, **params}, _metrics(value)
    )


def test_group_of_strips_only_the_seed_suffix():
    assert studies.group_of("profile-seed2") == "profile"
    assert studies.group_of("lambda-0.05-seed10") == "lambda-0.05"
    assert studies.group_of("quickstart") == "quickstart"
    assert studies.group_of("seed3") == "seed3"


def test_summarise_gives_mean_and_sample_std_per_group_in_order():
    runs = [
        _run("profile-seed0", 0.2, width=16),
        _run("other-seed0", 0.9),
        _run("profile-seed1", 0.4, width=16),
        _run("profile-seed2", 0.6, width=16),
    ]
    profile, other = studies.summarise(runs)
    assert (profile.group, profile.n, other.group, other.n) == ("profile", 3, "other", 1)
    assert profile.mean["paper/shared/scale"] == pytest.approx(0.4)
    assert profile.std["wide/exclusive/floor_hue"] == pytest.approx(np.std([0.2, 0.4, 0.6], ddof=1))
    assert profile.mean["paper/exclusive/distance_to_ideal"] == pytest.approx(2.4)
    assert other.std["paper/shared/scale"] == 0.0
    assert profile.params == {"width": 16}  # seed differs between runs, so it is not a shared param


def test_runs_missing_a_figure_are_left_out():
    incomplete = studies.Run("profile-seed9", {"seed": 9}, {"shared": {"scale": 1.0}})
    (s,) = studies.summarise([_run("profile-seed0", 0.5), incomplete])
    assert s.runs == ("profile-seed0",)


def test_a_run_whose_seed_contradicts_its_name_is_refused():
    with pytest.raises(DismiError, match=r"experiment profile-seed1 ran with seed=0, not 1: .* -S seed=1"):
        studies.summarise([studies.Run("profile-seed1", {"seed": 0}, _metrics(0.5))])


def test_lambda_curve_sorts_the_lambda_groups_by_their_value():
    runs = [
        _run("lambda-0.05-seed0", 0.3, lambda_adv=0.05),
        _run("lambda-0-seed0", 0.9, lambda_adv=0.0),
        _run("lambda-0-seed1", 0.7, lambda_adv=0.0),
        _run("profile-seed0", 0.5, lambda_adv=0.01),
    ]
    curve = studies.lambda_curve(studies.summarise(runs))
    assert [s.group for s in curve] == ["lambda-0", "lambda-0.05"]
    assert curve[0].mean["paper/exclusive/floor_hue"] == pytest.approx(0.8)
    # the baseline joins as the point at its own lambda_adv, unless a lambda group already has that value
    with_baseline = studies.lambda_curve(studies.summarise(runs), baseline="profile")
    assert [s.group for s in with_baseline] == ["lambda-0", "profile", "lambda-0.05"]
    runs.append(_run("lambda-0.01-seed0", 0.4, lambda_adv=0.01))
    assert "profile" not in [s.group for s in studies.lambda_curve(studies.summarise(runs), baseline="profile")]


def test_a_single_run_is_tabulated_without_the_zero_spread_it_does_not_have():
    # "± 0.0" beside one run reads as a measured spread of zero; one run has none to show.
    one, two = studies.summarise([_run("a-seed0", 0.3), _run("b-seed0", 0.2), _run("b-seed1", 0.4)])
    table = studies.summary_table(one)
    assert "one run, no spread" in table and "±" not in table and "| scale | 30.0 | 30.0 |" in table
    assert "mean ± std over 2 runs" in studies.summary_table(two)
    assert "| scale | 30.0 ± 14.1 |" in studies.summary_table(two)


def test_ablation_table_puts_the_baseline_first_and_shows_the_ablated_params():
    runs = [
        _run("ablation-gamma0-seed0", 0.3, gamma=0.0, switched=True),
        _run("profile-seed0", 0.5, gamma=0.1, switched=True),
    ]
    md = studies.ablation_table(studies.summarise(runs), "profile")
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| group")]
    assert rows[0].startswith("| profile (baseline) | 1 | True | 0.1 |")
    assert rows[1].startswith("| ablation-gamma0 | 1 | True | 0.0 |")
    assert "l1_reduce" in md.splitlines()[2]
    assert "| 30.0 |" in rows[1] and "± 0.0" not in md  # one run: no spread to claim


def _row(name, seed, value, **params):
    """One row as `dvc.api.exp_show()` gives it: flat columns, nested metric keys joined by dots."""
    flat = {}

    def walk(prefix, node):
        for k, v in node.items():
            walk(f"{prefix}{k}.", v) if isinstance(v, dict) else flat.__setitem__(f"{prefix}{k}", v)

    walk("", _metrics(value))
    return {
        "Experiment": name,
        "rev": "abc1234",
        "typ": "branch_commit",
        "Created": "2026-11-28T18:00:00",
        "parent": None,
        "State": "Success",
        "Executor": None,
        **flat,
        "seed": seed,
        **params,
        "metrics/train_shared/metrics.json:step": 30,
        "metrics/train_exclusive/metrics.json:step": 30,
    }


def test_runs_from_exp_show_skip_workspace_and_unnamed_rows():
    rows = [
        {**_row(None, 0, 0.5), "rev": "workspace", "typ": "baseline"},
        {**_row(None, 0, 0.5), "rev": "master"},
        _row("profile-seed1", 1, 0.25, lambda_adv=0.01),
    ]
    (run,) = runs_from_exp_show(rows)
    assert run.name == "profile-seed1" and run.params["seed"] == 1 and run.params["lambda_adv"] == 0.01
    assert run.metrics["held_out"]["paper"]["exclusive"]["scale"] == 0.25
    assert "step" not in run.params  # file-prefixed columns belong to other files


def test_runs_from_exp_show_skip_queued_running_and_failed_experiments():
    # DVC fills such rows with their baseline's metrics: counted, they would pose as results
    rows = [
        {**_row(f"lambda-1-seed{k}", k, 0.5, lambda_adv=1.0), "State": state}
        for k, state in enumerate(("Running", "Failed", "Queued", "Success", None))
    ]
    assert [r.name for r in runs_from_exp_show(rows)] == ["lambda-1-seed3", "lambda-1-seed4"]


def test_results_cli_writes_tables_and_figures(tmp_path):
    rows = [_row(f"profile-seed{k}", k, 0.2 * (k + 1), lambda_adv=0.01) for k in range(3)]
    rows += [_row(f"lambda-0.05-seed{k}", k, 0.5, lambda_adv=0.05) for k in range(2)]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    r = CliRunner().invoke(app, ["results", "--out", str(tmp_path / "res"), "--json", str(tmp_path / "rows.json")])
    assert r.exit_code == 0, r.output
    assert "2 group(s) over 5 run(s)" in r.output
    summary = json.loads((tmp_path / "res" / "results.json").read_text())
    assert summary[0]["group"] == "profile" and summary[0]["mean"]["paper/shared/scale"] == pytest.approx(0.4)
    assert "| scale | 40.0 ± 20.0 |" in (tmp_path / "res" / "results.md").read_text()
    for png in ("accuracy_seeds.png", "lambda_adv_paper.png", "lambda_adv_wide.png"):
        assert (tmp_path / "res" / png).stat().st_size > 1000
    assert "| 0.05 | lambda-0.05 | 2 | 50.0 ± 0.0 |" in (tmp_path / "res" / "lambda_adv.md").read_text()


def test_fig5_of_a_study_named_otherwise_is_drawn_from_its_prefix(tmp_path):
    # a study of lambda_adv at another profile names its groups after that profile, not `lambda-`
    rows = [_row(f"dim16-seed{k}", k, 0.2, lambda_adv=0.01) for k in range(2)]
    rows += [_row(f"dim16-adv1-seed{k}", k, 0.3, lambda_adv=1.0) for k in range(2)]
    rows += [_row("other-seed0", 0, 0.9, lambda_adv=0.5)]  # neither the prefix nor the baseline: not a point
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    args = ["results", "--out", str(tmp_path / "res"), "--json", str(tmp_path / "rows.json"), "--baseline", "dim16"]
    r = CliRunner().invoke(app, [*args, "--lambda-prefix", "dim16-adv"])
    assert r.exit_code == 0, r.output
    table = (tmp_path / "res" / "lambda_adv.md").read_text()
    points = [line.split(" | ")[:2] for line in table.splitlines() if line[2:3].isdigit()]
    assert points == [["| 0.01", "dim16"], ["| 1", "dim16-adv1"]]
    assert (tmp_path / "res" / "lambda_adv_paper.png").stat().st_size > 1000
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "none")])  # the default prefix finds no group
    assert r.exit_code == 0 and not (tmp_path / "none" / "lambda_adv.md").exists()


def test_lambda_table_shows_E_per_factor_the_distances_and_the_critics_per_lambda():
    def run(name, value, lam, critic):
        metrics = _metrics(value) | {"dependence": {"paper": {"loss": critic, "calibration_loss": 1.386}}}
        return studies.Run(
            name, {"seed": int(name[-1]), "lambda_adv": lam}, metrics, training={"adv_discriminator": 2.5}
        )

    runs = [run("lambda-1-seed0", 0.2, 1.0, 1.2), run("lambda-1-seed1", 0.4, 1.0, 1.0), run("p-seed0", 0.5, 0.01, 0.8)]
    table = studies.lambda_table(studies.lambda_curve(studies.summarise(runs), baseline="p"))
    head, _, first, second = table.split("\n\n")[1].splitlines()
    assert head.split(" | ")[3:4] == ["E floor_hue"] and "paper critic loss" in head and "training D loss" in head
    # rows in lambda order; each figure mean ± std over the group's runs, a single run's alone
    assert first.startswith("| 0.01 | p | 1 | 50.0 | 50.0 |") and "| 3.000 | 3.000 | 0.800 | 2.50 |" in first
    assert second.startswith("| 1 | lambda-1 | 2 | 30.0 ± 14.1 |") and "| 1.100 ± 0.141 | 2.50 ± 0.00 |" in second
    # a critic that one group did not measure is left out rather than shown as missing
    runs.append(studies.Run("lambda-0-seed0", {"seed": 0, "lambda_adv": 0.0}, _metrics(0.1)))
    table = studies.lambda_table(studies.lambda_curve(studies.summarise(runs), baseline="p"))
    assert "critic" not in table.split("\n\n")[1] and "training D loss" not in table.split("\n\n")[1]


def test_results_without_usable_runs_fails_clearly(tmp_path):
    (tmp_path / "rows.json").write_text("[]")
    r = CliRunner().invoke(app, ["results", "--out", str(tmp_path / "res"), "--json", str(tmp_path / "rows.json")])
    assert isinstance(r.exception, DismiError) and "no experiment has every figure" in str(r.exception)
    assert not (tmp_path / "res").exists()


def test_a_groups_params_hold_params_only():
    """Not the metric columns exp_show leaves unprefixed, dependencies' hashes or DVC's State and Executor."""
    row = {**_row("profile-seed1", 1, 0.25, lambda_adv=0.01), "data/pairs.h5": "720c6d3d", "width": 16}
    (run,) = runs_from_exp_show([row])
    assert set(run.params) == {"seed", "lambda_adv", "width"}
    saved = json.loads((REPO / "docs" / "reproduction" / "exp_rows.json").read_text())
    (profile,) = [s for s in studies.summarise(runs_from_exp_show(saved)) if s.group == "profile"]
    assert profile.n == 3 and {"State", "Executor", "shared.shape", "data/pairs.h5"}.isdisjoint(profile.params)
    assert profile.params["lambda_adv"] == 0.01 and "seed" not in profile.params


def test_runs_of_a_sweep_are_grouped_by_their_params_but_the_seed():
    """`dvc exp run --queue -S 'seed=range(2)' -S 'lambda_adv=0.1,1'`: DVC names the runs itself; the
    groups are named by what differs from the commit they ran from."""
    base = {**_row(None, 0, 0.5, lambda_adv=0.01, width=16), "rev": "main", "typ": "baseline"}
    rows = [base] + [
        _row(name, seed, value, lambda_adv=lam, width=16, checkpoint_every=every)
        for name, seed, lam, value, every in [
            ("sural-dado", 0, 0.1, 0.2, 100),
            ("bitty-ruse", 1, 0.1, 0.4, 50),
            ("awned-kiln", 0, 1.0, 0.6, 100),
            ("fiery-mess", 1, 1.0, 0.8, 100),
        ]
    ]
    rows.append(_row("profile-seed0", 0, 0.9, lambda_adv=0.1, width=16))  # named: its own group, as before
    summaries = studies.summarise(runs_from_exp_show(rows), ignore=("seed", "checkpoint_every"))
    assert [(s.group, s.runs) for s in summaries] == [
        ("lambda_adv=0.1", ("sural-dado", "bitty-ruse")),
        ("lambda_adv=1", ("awned-kiln", "fiery-mess")),
        ("profile", ("profile-seed0",)),
    ]
    assert summaries[0].mean["paper/shared/scale"] == pytest.approx(0.3)
    assert summaries[0].std["paper/shared/scale"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert summaries[1].params == {"lambda_adv": 1.0, "width": 16, "checkpoint_every": 100}
    # without a baseline row, a group is named by the params that vary between the groups
    unbased = studies.summarise(runs_from_exp_show(rows[1:]), ignore=("seed", "checkpoint_every"))
    assert [s.group for s in unbased] == ["lambda_adv=0.1", "lambda_adv=1", "profile"]
    # the lambda_adv curve takes the sweep's groups as its points
    assert [s.group for s in studies.lambda_curve(summaries)] == ["lambda_adv=0.1", "lambda_adv=1"]


def _curves(value, iterations=(10, 20)):
    """curves.json rows: each snapshot's held-out figures, here `value` plus a tenth per snapshot."""
    return [
        {"representation": rep, "probe": probe, "iteration": it, **{f: value + 0.1 * k for f in FACTORS}}
        | {"distance_to_ideal": 1.0 + k}
        for k, it in enumerate(iterations)
        for rep in ("shared", "exclusive")
        for probe in ("paper", "wide")
    ]


def _with_critics(metrics, losses):
    critic = {"loss": losses[max(losses)], "calibration_loss": 1.386}
    return {**metrics, "dependence": {"paper": critic, "separable": critic}}


def _critic_rows(losses):
    """The critics' loss per E snapshot as results reads it (critic_curves.json, as curve rows)."""
    return [
        {"representation": "exclusive", "probe": "critic", "iteration": it}
        | {"critic_paper_loss": loss, "critic_separable_loss": loss}
        for it, loss in losses.items()
    ]


def test_each_snapshot_and_the_training_d_are_summarised_over_seeds():
    runs = [
        studies.Run(
            f"hsic-seed{k}",
            {"seed": k},
            _with_critics(_metrics(v), {10: 0.5 + v, 20: 0.7 + v}),
            curves=_curves(v) + _critic_rows({10: 0.5 + v, 20: 0.7 + v}),
            training={"adv_discriminator": 2.5 + v},
        )
        for k, v in enumerate((0.2, 0.4))
    ]
    (s,) = studies.summarise(runs)
    assert s.mean["curve/paper/exclusive/20/scale"] == pytest.approx(0.4)  # (0.3 + 0.5) / 2
    assert s.std["curve/wide/shared/10/orientation"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert s.mean["curve/dependence/separable/10/loss"] == pytest.approx(0.8)
    assert s.mean["training/adv_discriminator"] == pytest.approx(2.8)
    table = studies.summary_table(s)
    # E's snapshots, paper probe, with the critics' loss on that snapshot beside them; S's without
    assert (
        "| 20 | 40.0 ± 14.1 | 40.0 ± 14.1 |" in table and "| 2.000 ± 0.000 | 1.000 ± 0.141 | 1.000 ± 0.141 |" in table
    )
    assert "| 10 | 30.0 ± 14.1 |" in table.split("E of each snapshot")[0].split("S of each snapshot")[1]
    assert "last logged loss: 2.80 ± 0.14 (2.773 = 4 ln 2 at chance)" in table


def test_a_group_whose_runs_were_saved_without_curves_shows_none():
    # rows saved before curves were kept: a per-snapshot table over some of a group's runs would pose as all
    runs = [
        studies.Run("a-seed0", {"seed": 0}, _metrics(0.2), curves=_curves(0.2)),
        studies.Run("a-seed1", {"seed": 1}, _metrics(0.4)),
    ]
    (s,) = studies.summarise(runs)
    assert not any(k.startswith("curve/") for k in s.mean)
    assert "snapshot" not in studies.summary_table(s) and "discriminator" not in studies.summary_table(s)


def test_runs_from_exp_show_read_the_curves_and_the_training_d_loss():
    from stages.results import CURVES_COLUMN

    rows = [
        {**_row("a-seed0", 0, 0.3), CURVES_COLUMN: _curves(0.3), "loss.adv_discriminator": 2.6},
        {**_row("a-seed1", 1, 0.3), "metrics/train_exclusive/metrics.json:loss.adv_discriminator": 2.7},
    ]
    first, second = runs_from_exp_show(rows)
    assert first.curves == _curves(0.3) and first.training == {"adv_discriminator": 2.6}
    assert second.curves == () and second.training == {"adv_discriminator": 2.7}
    assert CURVES_COLUMN not in first.params and "metrics" not in first.metrics  # the curves stay out of both


def test_saved_rows_remake_the_same_results_and_join_across_clones(tmp_path):
    from stages.results import CURVES_COLUMN

    one = [{**_row(f"p-seed{k}", k, 0.2 * (k + 1)), CURVES_COLUMN: _curves(0.1 * k)} for k in range(2)]
    other = [_row("q-seed0", 0, 0.5)]
    (tmp_path / "one.json").write_text(json.dumps(one))
    (tmp_path / "other.json").write_text(json.dumps(other))

    def results(out, *json_files, save=None):
        args = ["results", "--out", str(tmp_path / out), *(a for f in json_files for a in ("--json", str(f)))]
        r = CliRunner().invoke(app, args + (["--save-rows", str(save)] if save else []))
        assert r.exit_code == 0, r.output
        return json.loads((tmp_path / out / "results.json").read_text())

    joined = results("a", tmp_path / "one.json", tmp_path / "other.json", save=tmp_path / "saved.json")
    assert [g["group"] for g in joined] == ["p", "q"]
    assert joined[0]["mean"]["curve/paper/exclusive/20/scale"] == pytest.approx(0.15)
    assert json.loads((tmp_path / "saved.json").read_text()) == one + other
    assert results("b", tmp_path / "saved.json") == joined
    (tmp_path / "dict.json").write_text("{}")
    r = CliRunner().invoke(app, ["results", "--out", str(tmp_path / "c"), "--json", str(tmp_path / "dict.json")])
    assert isinstance(r.exception, DismiError) and "is not a readable JSON list of rows" in str(r.exception)
