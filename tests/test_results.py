"""The shape of a result (dismi.data.results): one nesting, one validation, and the saved study rows
(the layout before the judges were named) still read."""

import json
from pathlib import Path

import pytest

from dismi.data.factors import FACTORS
from dismi.data.results import HELD_OUT_FIGURES, ONLINE, PROBES, REPRESENTATIONS, Results
from dismi.eval import studies
from dismi.util.errors import DismiError

REPO = Path(__file__).resolve().parents[1]


def _figs(value, keys=HELD_OUT_FIGURES):
    return {k: value + i / 100 for i, k in enumerate(keys)}


def _new_layout() -> dict:
    return {
        "held_out": {
            p: {r: _figs(0.1 * (i + 1) + 0.3 * j) for j, r in enumerate(REPRESENTATIONS)} for i, p in enumerate(PROBES)
        },
        "online": {p: {r: _figs(0.05 * (i + 1), FACTORS) for r in REPRESENTATIONS} for i, p in enumerate(ONLINE)},
        "retrieval": {r: _figs(0.2, FACTORS) for r in REPRESENTATIONS},
        "dependence": {"chance_loss": 1.386, "paper": {"loss": 0.4, "calibration_loss": 1.387}},
    }


def test_results_round_trip_through_json():
    blob = _new_layout()
    assert Results.from_json(json.loads(json.dumps(blob))).to_json() == blob


@pytest.mark.parametrize("saved", sorted(REPO.glob("docs/**/exp_rows.json")), ids=lambda p: p.parent.name)
def test_every_study_row_saved_in_docs_is_in_todays_layout(saved):
    """The mistake: renaming evaluate.json's keys and losing the study rows saved in docs, or keeping a
    reader of an old layout for them: each saved run reads as today's Results, with no per-snapshot key."""
    from stages.results import runs_from_exp_show

    rows = json.loads(saved.read_text())
    runs = runs_from_exp_show(rows)
    assert runs and all(Results.from_json(r.metrics, complete=False) for r in runs)
    assert not [k for row in rows for k in row if "by_iteration" in k]


def test_a_missing_figure_is_one_line_that_names_it():
    blob = _new_layout()
    del blob["held_out"]["paper"]["exclusive"]["shape"]
    with pytest.raises(DismiError, match=r"held_out\.paper\.exclusive has no number for shape: rerun the evaluate"):
        Results.from_json(blob)
    blob = _new_layout()
    blob["online"]["wide"]["shared"]["scale"] = "n/a"
    with pytest.raises(DismiError, match=r"online\.wide\.shared has no number for scale"):
        Results.from_json(blob)


def test_studies_need_only_the_held_out_figures():
    blob = {"held_out": _new_layout()["held_out"]}
    with pytest.raises(DismiError, match="online.paper.shared is missing"):
        Results.from_json(blob)
    assert Results.from_json(blob, complete=False).held_out == blob["held_out"]


@pytest.mark.parametrize(
    "saved", sorted((REPO / "docs" / "reproduction").rglob("exp_rows.json")), ids=lambda p: p.parent.name
)
def test_every_saved_study_row_still_gives_its_figures(saved):
    rows = json.loads(saved.read_text())
    runs = [r for r in rows if r.get("Experiment")]
    from stages.results import runs_from_exp_show

    parsed = runs_from_exp_show(rows)
    assert parsed and len(parsed) <= len(runs)
    for run in parsed:
        figs = studies.figures(run.metrics)
        assert figs is not None, run.name
        assert {f"{p}/{r}/{f}" for p in PROBES for r in REPRESENTATIONS for f in HELD_OUT_FIGURES} <= set(figs)


def test_critic_figures_join_a_study_when_every_run_measured_them():
    with_critics = studies.Run("a-seed0", {"seed": 0}, _new_layout())
    without = studies.Run("a-seed1", {"seed": 1}, {"held_out": _new_layout()["held_out"]})
    (one,) = studies.summarise([with_critics])
    assert one.mean["dependence/paper/loss"] == pytest.approx(0.4)
    assert "S-E dependence" in studies.summary_table(one)
    (both,) = studies.summarise([with_critics, without])
    assert not any(k.startswith("dependence/") for k in both.mean)
    assert "S-E dependence" not in studies.summary_table(both)
