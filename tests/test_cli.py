"""The command surface: `python -m stages --help` lists the six stages, errors are one line."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ["download", "pairs", "train-shared", "train-exclusive", "evaluate", "plot"]


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "stages", *args], cwd=cwd, capture_output=True, text=True)


def test_help_lists_all_six_stages():
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    for name in STAGES + ["bench", "results"]:
        assert name in r.stdout


def test_stages_is_run_from_the_repository_and_not_installed_as_a_top_level_package(tmp_path):
    """The mistake: a site-packages module named `stages`, which shadows or is shadowed by any other."""
    code = "import importlib.util as u; print(u.find_spec('stages') is None, u.find_spec('dismi') is not None)"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.stdout.split() == ["True", "True"], r.stdout + r.stderr


def test_dvc_yaml_runs_the_stages_in_order_through_python_m_stages():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["download", "pairs", "train_shared", "train_exclusive", "evaluate", "plot"]
    for name, stage in stages.items():
        assert stage["cmd"].startswith(f"python -m stages {name.replace('_', '-')} ")


def test_bad_param_is_one_error_line_and_no_output(tmp_path):
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["dataset"] = "mnist"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    out = tmp_path / "data" / "shapes3d.h5"
    r = _run("download", "--out", str(out), "--params", str(tmp_path / "params.yaml"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: param dataset='mnist'"), r.stderr
    assert not out.exists()


def test_knobs_lists_every_param_with_its_value_and_the_reports_and_papers():
    r = _run("knobs")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert "| `gamma` | γ | 0.1 | 0.1 |" in r.stdout
    assert "| `iters_sh` | - | 4000 | 50000 | - |" in r.stdout
    assert "| `lr_ex` | - | 0.001 | 0.001 | 0.0001 |" in r.stdout


def test_the_readme_report_command_is_the_report_protocol():
    """The mistake: README's full-reproduction command and docs/protocols/report.yaml drifting apart."""
    r = _run("knobs", "--protocol", "report")
    assert r.returncode == 0, r.stderr
    readme = (REPO / "README.md").read_text().replace("\\\n", " ")
    command = next(line for line in readme.splitlines() if line.startswith("dvc exp run -n report"))
    assert sorted(re.findall(r"-S \S+", command)) == sorted(re.findall(r"-S \S+", r.stdout))
