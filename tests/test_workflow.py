"""What long, unattended runs need, without DVC: checkpoints in a per-user directory that any workspace
resumes from, dvclive steps that DVC's tools follow, log lines with the time left and no carriage
returns (the DVC queue and Slurm ends of the same are in test_pipeline)."""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dismi.data.download import cache_dir
from dismi.synthetic.compose import make_grid
from dismi.synthetic.render import write_synthetic
from dismi.train import modelfile
from dismi.util import progress
from stages import _driver
from stages.__main__ import app

REPO = Path(__file__).resolve().parents[1]


def _train_shared(params_file, workdir: Path, pairs: Path, **overrides):
    """train-shared as dvc.yaml runs it: no --checkpoints, so the per-user default."""
    params_file(workdir, **overrides)
    return CliRunner().invoke(
        app,
        [
            "train-shared",
            "--pairs",
            str(pairs),
            "--model",
            str(workdir / "shared.pt"),
            "--live",
            str(workdir / "live"),
            "--params",
            str(workdir / "params.yaml"),
        ],
    )


def test_checkpoints_live_in_a_per_user_directory_outside_the_workspace(monkeypatch, tmp_path):
    monkeypatch.delenv(_driver.CHECKPOINTS_ENV, raising=False)
    monkeypatch.setenv("DISMI_CACHE", str(tmp_path / "cache"))
    assert _driver.checkpoint_dir() == tmp_path / "cache" / "checkpoints" == cache_dir() / "checkpoints"
    monkeypatch.delenv("DISMI_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _driver.checkpoint_dir() == tmp_path / "xdg" / "dismi" / "checkpoints" == cache_dir() / "checkpoints"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert (
        _driver.checkpoint_dir()
        == tmp_path / "home" / ".cache" / "dismi" / "checkpoints"
        == cache_dir() / "checkpoints"
    )
    monkeypatch.setenv(_driver.CHECKPOINTS_ENV, "~/scratch/ck")
    assert _driver.checkpoint_dir() == tmp_path / "home" / "scratch" / "ck"
    assert _driver.checkpoint_dir(tmp_path / "given") == tmp_path / "given"  # --checkpoints wins


def test_a_run_killed_in_one_workspace_resumes_in_another(monkeypatch, tmp_path, pairs_file, params_file):
    """A queue task's workspace is deleted when it ends: the next task of the same configuration, in
    another directory, resumes the checkpoint and ends with the uninterrupted run's model."""
    monkeypatch.setenv(_driver.CHECKPOINTS_ENV, str(tmp_path / "ck"))
    real, calls = modelfile.save_checkpoint, []

    def save(path, state, fingerprint):
        calls.append(state["iteration"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed at its second checkpoint
        real(path, state, fingerprint)

    with monkeypatch.context() as m:
        m.setattr(modelfile, "save_checkpoint", save)
        assert _train_shared(params_file, tmp_path / "task1", pairs_file).exit_code != 0
    assert [p.name.split("-")[0] for p in (tmp_path / "ck").glob("*.pt")] == ["shared"]
    second = _train_shared(params_file, tmp_path / "task2", pairs_file)
    assert second.exit_code == 0, second.output
    assert "resuming from iteration 20" in second.output
    monkeypatch.setenv(_driver.CHECKPOINTS_ENV, str(tmp_path / "fresh"))
    reference = _train_shared(params_file, tmp_path / "uninterrupted", pairs_file)
    assert "starting fresh" in reference.output
    assert (tmp_path / "task2" / "shared.pt").read_bytes() == (tmp_path / "uninterrupted" / "shared.pt").read_bytes()
    assert not list((tmp_path / "ck").glob("*.pt"))  # the finished run deleted it


def test_each_logged_interval_is_a_dvclive_step_with_the_time_left(monkeypatch, tmp_path, pairs_file, params_file):
    """next_step() writes the signal DVC's VS Code extension follows for a queued run (DVC_ROOT is the
    repository the queue runs from); the rows keep the iteration as their step."""
    import dvclive.live

    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    monkeypatch.setenv(_driver.CHECKPOINTS_ENV, str(tmp_path / "ck"))
    signal = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "run" / "DVCLIVE_STEP_COMPLETED"
    real, signalled = dvclive.live.mark_dvclive_step_completed, []

    def mark(step):
        real(step)
        signalled.append(json.loads(signal.read_text())["step"])  # what the extension reads, as it is written

    monkeypatch.setattr(dvclive.live, "mark_dvclive_step_completed", mark)
    r = _train_shared(params_file, tmp_path, pairs_file)
    assert r.exit_code == 0, r.output
    assert signalled == [10, 20, 30, 40]
    assert json.loads((tmp_path / "live" / "metrics.json").read_text())["step"] == 40
    lines = [line for line in r.output.splitlines() if line.startswith("iteration ")]
    assert len(lines) == 4 and all(re.search(r"  \d+ thread\(s\), [\d.]+(it/s|s/it), [\d:]+ left", ln) for ln in lines)
    assert lines[-1].startswith("iteration 40/40, ") and " 00:00 left (" in lines[-1]


def test_time_left_reads_as_minutes_and_seconds():
    assert [progress.duration(s) for s in (4.4, 59.6, 190, 3599, 7500)] == [
        "4 s",
        "1 min 0 s",
        "3 min 10 s",
        "59 min 59 s",
        "2 h 5 min",
    ]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_write_lines_to_a_log_and_redraw_only_on_a_terminal():
    log = io.StringIO()
    for _ in progress.bar(range(5), file=log, desc="work"):
        pass
    assert "\r" not in log.getvalue() and log.getvalue().splitlines()[-1].startswith("work: 100%")
    terminal = _Terminal()
    for _ in progress.bar(range(5), file=terminal, desc="work"):
        pass
    assert "\r" in terminal.getvalue()


def test_rendering_into_a_log_leaves_no_carriage_returns(tmp_path, capsys):
    """What `dvc queue logs` shows of the download stage: its stderr is a file there."""
    grid = [[0, 5], [2, 7], [1, 8], [0, 7], [0, 1], [0, 7]]
    write_synthetic(tmp_path / "s.h5", grid=make_grid(grid), progress=True, workers=1)
    err = capsys.readouterr().err
    assert "render s.h5" in err and "\r" not in err


def _sh(cwd, *cmd):
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
        PYTHONPATH=str(REPO),
    )
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


TOY_STAGE = """stages:
  train:
    cmd: python train.py
    deps: [train.py]
    params: [a]
    outs: [model]
    metrics:
      - metrics.json:
          cache: false
"""


@pytest.mark.slow
def test_push_run_cache_lets_another_clone_restore_a_stage_with_uncached_metrics(tmp_path):
    """`dvc exp push --run-cache` alone leaves the files of cache: false outputs behind, and the other
    clone trains again; `python -m stages push-run-cache` sends them (a stage as dismi's training ones)."""
    dvc = [sys.executable, "-m", "dvc"]
    src = tmp_path / "src"
    src.mkdir()
    (src / "params.yaml").write_text("a: 1\n")
    (src / "train.py").write_text(
        "import json, yaml\na = yaml.safe_load(open('params.yaml'))['a']\n"
        "open('model', 'w').write(str(a))\njson.dump({'a': a}, open('metrics.json', 'w'))\n"
        "print('TRAINED')\n"
    )
    (src / "dvc.yaml").write_text(TOY_STAGE)
    _sh(src, "git", "init", "-q")
    _sh(src, *dvc, "init", "-q")
    _sh(src, *dvc, "remote", "add", "-d", "store", str(tmp_path / "store"))
    _sh(src, *dvc, "repro", "-q")
    _sh(src, "git", "add", "-A")
    _sh(src, "git", "commit", "-qm", "base")
    _sh(src, *dvc, "push", "-q")
    _sh(tmp_path, "git", "clone", "-q", "--bare", str(src), str(tmp_path / "origin.git"))

    def machine(name, a, push_files):
        _sh(tmp_path, "git", "clone", "-q", str(tmp_path / "origin.git"), str(tmp_path / name))
        _sh(tmp_path / name, *dvc, "fetch", "-q", "--run-cache", "--type", "metrics")
        out = _sh(tmp_path / name, *dvc, "exp", "run", "--pull", "--allow-missing", "-n", name, "-S", f"a={a}")
        _sh(tmp_path / name, *dvc, "exp", "push", "-f", "--run-cache", "origin", name)
        if push_files:
            _sh(tmp_path / name, sys.executable, "-m", "stages", "push-run-cache")
        return out

    assert "TRAINED" in machine("a1", 2, push_files=False)
    assert "TRAINED" in machine("b1", 2, push_files=False)  # what DVC alone does: trained twice
    assert "TRAINED" in machine("a2", 3, push_files=True)
    out = machine("b2", 3, push_files=False)
    assert "TRAINED" not in out and "Stage 'train' is cached" in out, out
