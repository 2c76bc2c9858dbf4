"""evaluate and plot end to end through the CLI, on a tiny pairs file, tiny encoders and real dvclive logs."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import torch
import yaml
from dvclive import Live
from typer.testing import CliRunner

from dismi.data.factors import FACTORS
from dismi.data.pairfile import TEST, load_pairs, write_pairs
from dismi.model.networks import Encoder, seeded
from dismi.train.modelfile import save_model
from dismi.train.training import logged_name
from dismi.util.files import file_sha256
from stages.__main__ import app

REPO = Path(__file__).resolve().parents[1]

LOSSES = {
    "shared": ("total", "global", "local", "l1", "classifier"),
    "exclusive": ("total", "global", "local", "adv_encoder", "adv_discriminator", "classifier"),
}
PNGS = ("learning_curves", "accuracy_table", "retrieval", "losses", "held_out_curves", "importance")


def _live(path: Path, rep: str, steps: int = 3) -> None:
    with Live(dir=str(path), dvcyaml=None, save_dvc_exp=False) as live:
        for step in range(steps):
            for name in LOSSES[rep]:
                live.log_metric(logged_name(name), 1.0 / (step + 1))
            for f in FACTORS:
                live.log_metric(f"acc_wide/{rep}/{f}", 0.1 * (step + 1) + 0.01 * FACTORS.index(f))
                live.log_metric(f"acc_paper/{rep}/{f}", 0.05 * (step + 1) + 0.01 * FACTORS.index(f))
            live.next_step()


@pytest.fixture(scope="module")
def project(tmp_path_factory, params_file, tiny_pairs):
    """A working directory with what the training stages leave behind, and evaluate run on it."""
    d = tmp_path_factory.mktemp("eval")
    write_pairs(d / "data" / "pairs.h5", tiny_pairs())
    sha = file_sha256(d / "data" / "pairs.h5")
    for i, rep in enumerate(("shared", "exclusive")):
        dim = 8 if rep == "shared" else 6  # S and E of different sizes, as with exclusive_dim 8: two probe banks
        encoder = seeded(lambda: Encoder(width=4, out_dim=dim), torch.Generator().manual_seed(i))
        # Two snapshots (iterations 10 and 20) before the final weights (30): the held-out curve.
        snaps = {
            it: seeded(lambda: Encoder(width=4, out_dim=dim), torch.Generator().manual_seed(10 * i + it)).state_dict()
            for it in (10, 20)
        }
        save_model(d / "models" / f"{rep}.pt", encoder, rep, {"width": 4}, sha, iteration=30, snapshots=snaps)
        _live(d / "metrics" / f"train_{rep}", rep)
    params_file(d)
    for stage in ("evaluate", "plot"):  # plot writes the Markdown tables of evaluate's figures
        result = _cli(_args(d, stage))
        assert result.exit_code == 0, result.output
    return d


def _args(d: Path, stage: str, **override) -> list[str]:
    """The stage's command line from dvc.yaml, its paths rooted in `d`, some options replaced."""
    cmd = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["cmd"].split()[3:]
    args = [str(d / a) if a.startswith(("data/", "models/", "metrics/")) else a for a in cmd]
    for flag, value in override.items():
        args[args.index("--" + flag.replace("_", "-")) + 1] = str(value)
    return args + (["--params", str(d / "params.yaml")] if stage == "evaluate" else [])


def _keys(node) -> list[str]:
    return [k for key, v in node.items() for k in (key, *(_keys(v) if isinstance(v, dict) else ()))]


def _cli(args: list[str]):
    return CliRunner().invoke(app, args)


def _elsewhere(tmp_path: Path) -> dict:
    """evaluate's outputs redirected away from the shared project."""
    return dict(
        metrics=tmp_path / "e.json",
        retrieval=tmp_path / "r.json",
        curves=tmp_path / "c.json",
        importance=tmp_path / "i.json",
        critic_curves=tmp_path / "cc.json",
    )


def test_evaluate_writes_every_figure_nested_for_dvc_metrics_diff(project):
    """The keys of evaluate.json do not depend on the run's length: per-snapshot series are in curves.json."""
    m = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert "by_iteration" not in json.dumps(m) and not any(k.isdigit() for k in _keys(m))
    assert list(m) == ["held_out", "online", "retrieval", "dependence", "standard"]
    assert list(m["held_out"]) == ["paper", "wide"] and list(m["online"]) == ["paper", "wide"]
    for rep in ("shared", "exclusive"):
        for acc in (m["held_out"]["wide"][rep], m["held_out"]["paper"][rep]):
            assert set(acc) == {*FACTORS, "distance_to_ideal"}
            assert all(0.0 <= acc[f] <= 1.0 for f in FACTORS)
            assert acc["distance_to_ideal"] >= 0.0
        assert m["online"]["paper"][rep] == pytest.approx({f: 0.15 + 0.01 * i for i, f in enumerate(FACTORS)})
        assert set(m["retrieval"][rep]) == set(FACTORS)
        # Online figures are the last values the training logs hold (step 2: 0.3 + 0.01 * factor index).
        assert m["online"]["wide"][rep] == pytest.approx({f: 0.3 + 0.01 * i for i, f in enumerate(FACTORS)})
    md = (project / "metrics" / "evaluate.md").read_text()
    for f in FACTORS:
        assert f"| {f} | " in md
    assert "| distance to ideal |" in md and "held-out" in md and "Online" in md
    assert "| factor | S paper probe | S wide probe | E paper probe | E wide probe |" in md
    assert "| critic | loss | JSD | calibration loss | calibration JSD |" in md
    assert "| code | DCI disentanglement | DCI completeness | DCI informativeness (%) | MIG |" in md
    assert md.count("| floor_hue | ") == 4  # held-out, online, retrieval, and the standard metrics per factor


def test_the_standard_metrics_are_in_evaluate_json_with_their_importance_matrix(project):
    std = json.loads((project / "metrics" / "evaluate.json").read_text())["standard"]
    assert set(std) == {"dci", "importance_share", "informativeness", "mig"}
    assert set(std["dci"]) == {"disentanglement", "completeness", "informativeness"}
    assert all(0.0 <= v <= 1.0 for v in std["dci"].values())
    for f in FACTORS:  # S and E share each factor's importance between them
        assert std["importance_share"]["shared"][f] + std["importance_share"]["exclusive"][f] == pytest.approx(1.0)
    assert set(std["informativeness"]) == {"joint", "shared", "exclusive"}
    assert set(std["mig"]) == {"mig", *FACTORS}
    imp = json.loads((project / "metrics" / "importance.json").read_text())
    assert (imp["shared_dim"], imp["exclusive_dim"]) == (8, 6)
    assert len(imp["importance"]) == 14 and all(len(row) == 6 for row in imp["importance"])


def test_dependence_is_measured_for_every_exclusive_snapshot_by_both_critics(project):
    """The dependence figures: both critics, every E snapshot (the final one last), a calibration,
    and the JSD each loss implies; a missing critic or a loss mislabelled as the calibration fails."""
    dep = json.loads((project / "metrics" / "evaluate.json").read_text())["dependence"]
    assert dep["chance_loss"] == pytest.approx(2 * math.log(2))
    rows = json.loads((project / "metrics" / "critic_curves.json").read_text())
    assert [r["iteration"] for r in rows] == [10, 20, 30]
    assert all(set(r) == {"iteration", "paper", "separable"} for r in rows)  # one shape: DVC draws it
    for critic in ("paper", "separable"):
        d = dep[critic]
        assert rows[-1][critic] == d["loss"] and all(r[critic] > 0 for r in rows)
        for loss, jsd in ((d["loss"], d["jsd"]), (d["calibration_loss"], d["calibration_jsd"])):
            assert loss > 0 and jsd == pytest.approx(math.log(2) - loss / 2)


def test_curves_hold_every_snapshot_and_end_at_the_final_figures(project):
    rows = json.loads((project / "metrics" / "curves.json").read_text())
    m = json.loads((project / "metrics" / "evaluate.json").read_text())
    for rep in ("shared", "exclusive"):
        for probe, final in (("wide", m["held_out"]["wide"][rep]), ("paper", m["held_out"]["paper"][rep])):
            mine = [r for r in rows if r["representation"] == rep and r["probe"] == probe]
            assert [r["iteration"] for r in mine] == [10, 20, 30]
            assert {k: mine[-1][k] for k in final} == final
    # Snapshots are other weights, so the curve is not one repeated point.
    shared_wide = [r for r in rows if r["representation"] == "shared" and r["probe"] == "wide"]
    assert any(shared_wide[0][f] != shared_wide[-1][f] for f in FACTORS)


def test_retrieval_json_names_test_images_and_never_the_query(project, tiny):
    data = load_pairs(project / "data" / "pairs.h5")
    test_rows = set(data.image_rows(TEST).tolist())
    r = json.loads((project / "metrics" / "retrieval.json").read_text())
    assert r["k"] == tiny["retrieval_k"] and len(r["queries"]) == 6
    for q in r["queries"]:
        assert q["row"] in test_rows and data.source[q["row"]] == q["source"]
        for rep in ("shared", "exclusive"):
            rows = q[rep]["rows"]
            assert len(rows) == 3 and q["row"] not in rows and set(rows) <= test_rows
            assert data.source[rows].tolist() == q[rep]["source"]


def test_evaluate_is_reproducible(project, tmp_path):
    result = _cli(_args(project, "evaluate", **_elsewhere(tmp_path)))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "e.json").read_text() == (project / "metrics" / "evaluate.json").read_text()
    assert (tmp_path / "r.json").read_text() == (project / "metrics" / "retrieval.json").read_text()


def test_swapped_models_fail_in_one_line_and_leave_no_results(project, tmp_path):
    args = _args(project, "evaluate", exclusive=project / "models" / "shared.pt", **_elsewhere(tmp_path))
    r = subprocess.run([sys.executable, "-m", "stages", *args], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model") and "'shared' encoder" in lines[0], r.stderr
    assert not any(tmp_path.iterdir())


def test_too_large_retrieval_k_names_the_param(project, tmp_path, params_file):
    params = params_file(tmp_path, retrieval_k=50)
    args = _args(project, "evaluate", **_elsewhere(tmp_path))
    args[-1] = str(params)
    result = _cli(args)
    assert result.exit_code != 0 and "retrieval_k=50" in str(result.exception)
    assert not (tmp_path / "e.json").exists()


def test_the_earlier_online_protocol_is_reported_beside_the_correct_one_when_logged(project, tmp_path):
    """online_earlier runs log acc_earlier/...: evaluate carries those figures and says which protocol
    they come from; without them (the default) evaluate.json has no such key (tested above)."""
    logs = {}
    for rep in ("shared", "exclusive"):
        logs[rep] = tmp_path / f"{rep}.json"
        m = json.loads((project / "metrics" / f"train_{rep}" / "metrics.json").read_text())
        m["acc_earlier"] = {rep: {f: 0.2 + 0.01 * i for i, f in enumerate(FACTORS)}}
        logs[rep].write_text(json.dumps(m))
    result = _cli(
        _args(
            project,
            "evaluate",
            online_shared=logs["shared"],
            online_exclusive=logs["exclusive"],
            **_elsewhere(tmp_path),
        )
    )
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "e.json").read_text())
    assert m["online"]["earlier"]["exclusive"] == pytest.approx({f: 0.2 + 0.01 * i for i, f in enumerate(FACTORS)})
    result = _cli(_args(project, "plot", metrics=tmp_path / "e.json", out=tmp_path / "plots", table=tmp_path / "t.md"))
    assert result.exit_code == 0, result.output
    assert "softmax applied before the cross-entropy" in (tmp_path / "t.md").read_text()


def test_evaluate_says_what_it_is_doing_and_how_long_is_left(project, tmp_path):
    result = _cli(_args(project, "evaluate", **_elsewhere(tmp_path)))
    lines = [ln for ln in result.output.splitlines() if ln.startswith("evaluate: ")]
    assert any("encoding every image: snapshot 6/6" in ln for ln in lines), result.output
    # S and E of different sizes train as two banks: the epochs count on across them, never back to 1/n
    wide = [ln for ln in lines if "wide probes" in ln]
    assert [ln.split("epoch ")[1].split(",")[0] for ln in wide] == [f"{k}/4" for k in range(1, 5)], wide
    for what in ("wide probes on 6 snapshots", "paper probes on 6 snapshots", "paper critics", "separable critics"):
        assert any(what in ln and re.search(r"[\d:]+ left \([\d:]+ so far\)", ln) for ln in lines), (
            what,
            result.output,
        )
    assert "\r" not in result.output


def test_missing_training_log_is_named(project, tmp_path):
    result = _cli(_args(project, "evaluate", online_shared=tmp_path / "nope.json", **_elsewhere(tmp_path)))
    assert result.exit_code != 0 and "nope.json not found" in str(result.exception)


# ---- plot ----------------------------------------------------------------------------------


def test_plot_writes_the_four_figures(project, tmp_path):
    result = _cli(_args(project, "plot", out=tmp_path / "plots", table=tmp_path / "t.md"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t.md").read_text() == (project / "metrics" / "evaluate.md").read_text()
    for name in PNGS:
        png = tmp_path / "plots" / f"{name}.png"
        assert png.stat().st_size > 1000
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 200 and image.std() > 0.01  # decodes, not blank
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(f"{n}.png" for n in PNGS)


def test_plot_refuses_retrieval_rows_from_another_pairs_file(project, tmp_path):
    other = tmp_path / "other.h5"
    data = load_pairs(project / "data" / "pairs.h5")
    data.source = data.source[::-1].copy()
    write_pairs(other, data)
    result = _cli(_args(project, "plot", pairs=other, out=tmp_path / "plots", table=tmp_path / "t.md"))
    assert result.exit_code != 0 and "another pairs file" in str(result.exception)
    assert not (tmp_path / "plots").exists() and not (tmp_path / "t.md").exists()
