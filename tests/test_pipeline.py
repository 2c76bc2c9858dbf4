"""End to end through DVC on a tiny configuration, in a throw-away copy of the repository.

Proves from DVC's own output that `dvc repro` runs all six stages, that each param reruns only
the stages that read it and those after them, that `dvc metrics diff` lists every figure, and that
a queue of lambda_adv runs trains train_shared once (the run-cache restores it for the others) and
`dvc plots diff` compares them.
"""
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ALL = ["download", "pairs", "train_shared", "train_exclusive", "evaluate", "plot"]
TINY = dict(dataset="synthetic", synthetic_grid="small", n_pairs=240, test_fraction=0.25, width=4,
            shared_dim=8, exclusive_dim=8, batch_size=16, iters_sh=30, iters_ex=30, log_every=10,
            checkpoint_every=15, probe_epochs=3, retrieval_k=3, retrieval_queries=20, device="cpu")


def _env():
    env = dict(os.environ)
    # `python` in dvc.yaml must be this interpreter; git needs an identity to commit.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return env


def _sh(cwd, *cmd, stdout_only=False):
    r = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout if stdout_only else r.stdout + r.stderr


def _dvc(cwd, *args, stdout_only=False):
    return _sh(cwd, sys.executable, "-m", "dvc", *args, stdout_only=stdout_only)


def _ran(output):
    """Stages DVC ran and stages it skipped, read from its own log lines."""
    ran = re.findall(r"Running stage '([\w-]+)'", output)
    skipped = re.findall(r"Stage '([\w-]+)' didn't change, skipping", output)
    return set(ran), set(skipped)


def _restored(output):
    """Stages DVC restored from its run-cache instead of running them."""
    return set(re.findall(r"Stage '([\w-]+)' is cached - skipping run", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    dst = tmp_path_factory.mktemp("project")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if rel.startswith("metrics/") or not (REPO / rel).is_file():
            continue  # start from no results, as a fresh user with a clean checkout would after `dvc repro`
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst / rel)
    p = yaml.safe_load((dst / "params.yaml").read_text())
    p.update(TINY)
    (dst / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    _sh(dst, "git", "init", "-q")
    _sh(dst, "git", "add", "-A")
    _sh(dst, "git", "commit", "-qm", "tiny")
    out = _dvc(dst, "repro")
    return dst, out


@pytest.mark.slow
def test_repro_runs_all_six_and_commits_cleanly(project):
    dst, out = project
    ran, _ = _ran(out)
    assert ran == set(ALL), out
    metrics = json.loads((dst / "metrics" / "evaluate.json").read_text())
    for rep in ("shared", "exclusive"):
        for f in ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"):
            assert 0.0 <= metrics[rep][f] <= 1.0
        assert metrics[rep]["distance_to_ideal"] >= 0.0
    for png in ("learning_curves", "accuracy_table", "retrieval", "losses", "held_out_curves"):
        assert (dst / "metrics" / "plots" / f"{png}.png").stat().st_size > 1000
    # Data, models and checkpoints stay out of git; metrics go in.
    _sh(dst, "git", "add", "-A")
    tracked = _sh(dst, "git", "ls-files")
    assert "data/shapes3d.h5" not in tracked and "models/shared.pt" not in tracked
    assert "checkpoints/" not in tracked and "metrics/evaluate.json" in tracked
    assert not list((dst / "checkpoints").glob("*.pt"))  # finished runs leave no checkpoint behind
    _sh(dst, "git", "commit", "-qm", "baseline results")
    assert "up to date" in _dvc(dst, "status").lower()


@pytest.mark.slow
@pytest.mark.parametrize("key, value, first", [
    ("alpha_sh", 0.3, "train_shared"),
    ("lambda_adv", 0.02, "train_exclusive"),
    ("probe_epochs", 2, "evaluate"),
    ("n_pairs", 200, "pairs"),
])
def test_param_reruns_only_its_stage_and_downstream(project, key, value, first):
    dst, _ = project
    out = _dvc(dst, "exp", "run", "-S", f"{key}={value}")
    ran, skipped = _ran(out)
    expected = set(ALL[ALL.index(first):])
    assert ran == expected, out
    assert skipped == set(ALL) - expected, out
    # The experiment's results are in the workspace: diff them against the committed baseline.
    diff = json.loads(_dvc(dst, "metrics", "diff", "--all", "--json", stdout_only=True))
    figures = diff["metrics/evaluate.json"]
    for name in ("shared.shape", "exclusive.floor_hue", "shared.distance_to_ideal",
                 "exclusive.distance_to_ideal", "retrieval.shared.shape"):
        assert name in figures, sorted(figures)
    _sh(dst, "git", "checkout", "-q", "--", ".")  # back to the baseline for the next param
    _dvc(dst, "checkout", "-q")


@pytest.mark.slow
def test_results_summarise_named_seed_runs_from_dvcs_own_experiments(project):
    dst, _ = project
    for seed in (1, 2):
        out = _dvc(dst, "exp", "run", "-n", f"tiny-seed{seed}", "-S", f"seed={seed}")
        ran, _ = _ran(out)
        assert "pairs" not in ran and "train_shared" in ran, out  # the seed trains anew; the split stays
    out = _sh(dst, sys.executable, "-m", "stages", "results", "--out", "res", "--baseline", "tiny")
    assert "wrote results.md, results.json, accuracy_seeds.png" in out, out
    (tiny,) = [g for g in json.loads((dst / "res" / "results.json").read_text()) if g["group"] == "tiny"]
    assert sorted(tiny["runs"]) == ["tiny-seed1", "tiny-seed2"]
    by_seed = [_exp_metric(dst, f"tiny-seed{s}", "paper_probe.shared.scale") for s in (1, 2)]
    assert tiny["mean"]["paper/shared/scale"] == pytest.approx(sum(by_seed) / 2, abs=1e-4)
    assert (dst / "res" / "accuracy_seeds.png").stat().st_size > 1000


def _exp_metric(dst, name, column):
    """A metric of one named experiment, as `dvc exp show --csv` prints it."""
    text = _dvc(dst, "exp", "show", "--csv", stdout_only=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    (row,) = [r for r in rows if r["Experiment"] == name]
    return float(row[column])


@pytest.mark.slow
def test_a_lambda_adv_queue_trains_train_shared_once_and_dvc_compares_the_runs(project):
    dst, _ = project
    _sh(dst, "git", "checkout", "-q", "--", ".")  # the committed baseline, whatever ran before
    _dvc(dst, "checkout", "-q")
    _sh(dst, "git", "add", "-A")
    _sh(dst, "git", "commit", "-qm", "baseline", "--allow-empty")
    # Both runs share an alpha_sh that was never trained, so the first must train train_shared; the
    # second differs in lambda_adv and in checkpoint_every (which changes no output: not tracked).
    runs = {"q-lam1": ["-S", "lambda_adv=0.02"], "q-lam2": ["-S", "lambda_adv=0.03", "-S", "checkpoint_every=5"]}
    for name, sets in runs.items():
        _dvc(dst, "exp", "run", "--queue", "-n", name, "-S", "alpha_sh=0.45", *sets)
    out = _dvc(dst, "exp", "run", "--run-all", "-j", "1")
    logs = {name: _dvc(dst, "queue", "logs", name) for name in runs}
    print(out, *logs.values(), sep="\n")  # shown with -s, quoted in reports
    (ran1, _), (ran2, _) = _ran(logs["q-lam1"]), _ran(logs["q-lam2"])
    assert {"train_shared", "train_exclusive"} <= ran1, logs["q-lam1"]
    assert "train_shared" not in ran2 and "train_shared" in _restored(logs["q-lam2"]), logs["q-lam2"]
    assert "train_exclusive" in ran2, logs["q-lam2"]
    assert sum(log.count("Running stage 'train_shared'") for log in logs.values()) == 1
    # Going back to a trained configuration restores both training stages from the run-cache.
    back = _dvc(dst, "exp", "run", "-S", "alpha_sh=0.45", "-S", "lambda_adv=0.02")
    print(back)
    assert {"train_shared", "train_exclusive"} <= _restored(back), back
    assert not _ran(back)[0] & {"download", "pairs", "train_shared", "train_exclusive"}, back
    # dvc plots diff compares the two runs: per representation the six online accuracies in one plot
    # and the loss terms in another, both runs in each; the PNG figures as images.
    plots = json.loads(_dvc(dst, "plots", "diff", "q-lam1", "q-lam2", "--json", "-o", str(dst.parent / "dvc_plots"),
                            stdout_only=True))["data"]
    for rep in ("shared", "exclusive"):
        for plot_id in (f"{rep}_online_acc", f"{rep}_online_acc_paper", f"{rep}_losses"):
            assert plot_id in plots, sorted(plots)
            (vega,) = plots[plot_id]
            assert vega["type"] == "vega" and set(vega["revisions"]) == set(runs), vega["revisions"]
    lines = {plot_id: {row["filename::field"] for row in plots[plot_id][0]["content"]["data"]["values"]}
             for plot_id in ("shared_online_acc", "exclusive_losses")}
    assert lines["shared_online_acc"] == {f"{f}.tsv::{f}" for f in ("floor_hue", "wall_hue", "object_hue", "scale",
                                                                    "shape", "orientation")}
    assert lines["exclusive_losses"] == {f"{t}.tsv::{t.split('/')[1]}" for t in (
        "loss/total", "mi/global", "mi/local", "loss/adv_encoder", "loss/adv_discriminator", "loss/classifier")}
    for png in ("learning_curves", "accuracy_table", "retrieval", "losses", "held_out_curves"):
        images = plots[f"metrics/plots/{png}.png"]
        assert {i["type"] for i in images} == {"image"} and {r for i in images for r in i["revisions"]} == set(runs)


@pytest.mark.slow
def test_two_machines_share_experiments_through_a_git_and_a_dvc_remote(project, tmp_path):
    """Machine A runs one configuration with the Slurm recipe (docs/runners/slurm_array.sh, as array task 0)
    and pushes it; machine B sees it, compares it and pulls its models without training anything."""
    dst, _ = project
    _sh(dst, "git", "checkout", "-q", "--", ".")  # the committed baseline, whatever ran before
    _dvc(dst, "checkout", "-q")
    store, origin = tmp_path / "dvc-store", tmp_path / "origin.git"
    _dvc(dst, "remote", "add", "-f", "-d", "store", str(store))
    _sh(dst, "git", "add", "-A")
    _sh(dst, "git", "commit", "-qm", "baseline and its DVC remote", "--allow-empty")
    _dvc(dst, "push", "-q")  # the baseline's data and models, as its author would
    _sh(tmp_path, "git", "clone", "-q", "--bare", str(dst), str(origin))
    commit = _sh(dst, "git", "rev-parse", "HEAD", stdout_only=True).strip()

    runs = tmp_path / "runs.txt"
    runs.write_text("other-lambda lambda_adv=0.04 seed=0\n")
    env_a = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_JOB_ID": "a", "DISMI_SCRATCH": str(tmp_path / "a")}
    r = subprocess.run(["bash", str(REPO / "docs" / "runners" / "slurm_array.sh"), str(origin), commit, str(runs)],
                       cwd=tmp_path, env=_env() | env_a, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    ran, _ = _ran(r.stdout + r.stderr)
    # --pull --allow-missing: A pulled the baseline's upstream outputs instead of recomputing them
    assert ran == {"train_exclusive", "evaluate", "plot"}, r.stdout + r.stderr
    assert "pushed experiment other-lambda" in r.stdout

    b = tmp_path / "b"
    _sh(tmp_path, "git", "clone", "-q", str(origin), str(b))
    _dvc(b, "exp", "pull", "origin", "other-lambda")
    assert "other-lambda" in _dvc(b, "exp", "show", "--csv", stdout_only=True)
    exp_rev = _dvc(b, "exp", "show", "--json", stdout_only=True)
    rev = next(e["rev"] for row in json.loads(exp_rev) for e in row.get("experiments") or []
               for e in [e["revs"][0]] if e.get("name") == "other-lambda")
    diff = json.loads(_dvc(b, "metrics", "diff", "HEAD", rev, "--all", "--json", stdout_only=True))
    assert "exclusive.distance_to_ideal" in diff["metrics/evaluate.json"]
    _dvc(b, "exp", "apply", "other-lambda")
    _dvc(b, "pull", "-q")
    assert (b / "models" / "exclusive.pt").stat().st_size > 0
    assert "up to date" in _dvc(b, "status").lower()  # B's workspace is A's run: nothing to retrain
    assert _sh(b, "git", "hash-object", "models/exclusive.pt", stdout_only=True) == \
        _sh(tmp_path / "a" / "dismi-a-0", "git", "hash-object", "models/exclusive.pt", stdout_only=True)
