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
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
ALL = ["download", "pairs", "train_shared", "train_exclusive", "evaluate", "plot"]
TINY = dict(
    dataset="synthetic",
    synthetic_grid="small",
    n_pairs=240,
    test_fraction=0.25,
    width=4,
    shared_dim=8,
    exclusive_dim=8,
    batch_size=16,
    iters_sh=30,
    iters_ex=30,
    log_every=10,
    checkpoint_every=15,
    probe_epochs=3,
    retrieval_k=3,
    retrieval_queries=20,
    device="cpu",
)


def _env():
    env = dict(os.environ)
    # `python` in dvc.yaml must be this interpreter; git needs an identity to commit.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    env.pop("DISMI_CHECKPOINTS", None)  # checkpoints go to the default, under conftest's private DISMI_CACHE
    return env


def _checkpoint_dir() -> Path:
    """Where the training stages of these tests keep their checkpoints (stages/_driver.checkpoint_dir)."""
    return Path(os.environ["DISMI_CACHE"]) / "checkpoints"


def _training_pids(under: Path, stage: str) -> list[int]:
    """Processes running `python -m stages <stage>` whose working directory is under `under`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(proc / "cwd"))
        except (OSError, ValueError):
            continue
        if b"stages" in cmd and stage.encode() in cmd and cwd.is_relative_to(under):
            pids.append(int(proc.name))
    return pids


def _kill_at_checkpoint(run: subprocess.Popen, under: Path, stage: str, at: int, since: float) -> int:
    """SIGKILL `stage` (run below `under`), as a pre-emption would, once a checkpoint written after
    `since` has reached iteration `at` -> that checkpoint's iteration."""
    rep = stage.removeprefix("train-")
    deadline = time.time() + 600
    while time.time() < deadline:
        assert run.poll() is None, f"the run ended before its checkpoint at {at}:\n{run.communicate()[0]}"
        for ck in _checkpoint_dir().glob(f"{rep}-*.pt"):
            try:
                it = torch.load(ck, weights_only=True)["iteration"] if ck.stat().st_mtime >= since else 0
            except Exception:  # replaced while read
                continue
            pids = _training_pids(under, stage) if it >= at else []
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            if pids:
                return it
        time.sleep(0.1)
    raise AssertionError(f"no {rep} checkpoint reached iteration {at} in 10 minutes")


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
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
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
            assert 0.0 <= metrics["held_out"]["wide"][rep][f] <= 1.0
        assert metrics["held_out"]["wide"][rep]["distance_to_ideal"] >= 0.0
    for png in ("learning_curves", "accuracy_table", "retrieval", "losses", "held_out_curves"):
        assert (dst / "metrics" / "plots" / f"{png}.png").stat().st_size > 1000
    # Data, models and checkpoints stay out of git; metrics go in.
    _sh(dst, "git", "add", "-A")
    tracked = _sh(dst, "git", "ls-files")
    assert "data/shapes3d.h5" not in tracked and "models/shared.pt" not in tracked
    assert "checkpoints/" not in tracked and "metrics/evaluate.json" in tracked
    assert not (dst / "checkpoints").exists()  # checkpoints live outside the workspace, per user
    assert not list(_checkpoint_dir().glob("*.pt"))  # and finished runs leave none behind
    _sh(dst, "git", "commit", "-qm", "baseline results")
    assert "up to date" in _dvc(dst, "status").lower()


@pytest.mark.slow
@pytest.mark.parametrize(
    "key, value, first",
    [
        ("alpha_sh", 0.3, "train_shared"),
        ("lambda_adv", 0.02, "train_exclusive"),
        ("probe_epochs", 2, "evaluate"),
        ("n_pairs", 200, "pairs"),
    ],
)
def test_param_reruns_only_its_stage_and_downstream(project, key, value, first):
    dst, _ = project
    out = _dvc(dst, "exp", "run", "-S", f"{key}={value}")
    ran, skipped = _ran(out)
    expected = set(ALL[ALL.index(first) :])
    assert ran == expected, out
    assert skipped == set(ALL) - expected, out
    # The experiment's results are in the workspace: diff them against the committed baseline.
    diff = json.loads(_dvc(dst, "metrics", "diff", "--all", "--json", stdout_only=True))
    figures = diff["metrics/evaluate.json"]
    for name in (
        "held_out.wide.shared.shape",
        "held_out.paper.exclusive.floor_hue",
        "held_out.wide.shared.distance_to_ideal",
        "held_out.paper.exclusive.distance_to_ideal",
        "retrieval.shared.shape",
    ):
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
    by_seed = [_exp_metric(dst, f"tiny-seed{s}", "held_out.paper.shared.scale") for s in (1, 2)]
    assert tiny["mean"]["paper/shared/scale"] == pytest.approx(sum(by_seed) / 2, abs=1e-4)
    assert (dst / "res" / "accuracy_seeds.png").stat().st_size > 1000
    # each run's curves.json, read from its experiment commit, and its training D's last loss
    refs = _sh(dst, "git", "for-each-ref", "--format=%(refname)", "refs/exps", stdout_only=True).split()
    curves = [
        json.loads(_sh(dst, "git", "show", f"{ref}:metrics/curves.json", stdout_only=True))
        for s in (1, 2)
        for ref in refs
        if ref.endswith(f"/tiny-seed{s}")
    ]
    last = [
        next(
            r["scale"]
            for r in c
            if (r["probe"], r["representation"]) == ("paper", "exclusive") and r["iteration"] == 30
        )
        for c in curves
    ]
    assert len(last) == 2 and tiny["mean"]["curve/paper/exclusive/30/scale"] == pytest.approx(sum(last) / 2)
    d_loss = [_exp_metric(dst, f"tiny-seed{s}", "loss.adv_discriminator") for s in (1, 2)]
    assert tiny["mean"]["training/adv_discriminator"] == pytest.approx(sum(d_loss) / 2, abs=1e-4)
    assert "E of each snapshot of its training" in (dst / "res" / "results.md").read_text()
    # the saved rows remake the same tables without DVC
    _sh(
        dst, sys.executable, "-m", "stages", "results", "--out", "res", "--baseline", "tiny", "--save-rows", "rows.json"
    )
    _sh(dst, sys.executable, "-m", "stages", "results", "--out", "res2", "--baseline", "tiny", "--json", "rows.json")
    assert (dst / "res2" / "results.json").read_text() == (dst / "res" / "results.json").read_text()


@pytest.mark.slow
def test_results_see_a_queued_sweep_of_an_earlier_commit_grouped_by_its_params(project):
    """DVC's own sweep syntax through the queue: the runs get DVC's generated names and are grouped by
    their params but the seed; a commit afterwards does not hide them."""
    dst, _ = project
    _baseline(dst)
    _dvc(dst, "exp", "run", "--queue", "-S", "seed=range(1,3)", "-S", "lambda_adv=0.025")
    _dvc(dst, "exp", "run", "--run-all", "-j", "1")
    names = [
        r["Experiment"]
        for r in csv.DictReader(io.StringIO(_dvc(dst, "exp", "show", "--csv", stdout_only=True)))
        if r["Experiment"] and r["lambda_adv"] and float(r["lambda_adv"]) == 0.025
    ]
    _sh(dst, "git", "commit", "-qm", "a later commit", "--allow-empty")  # HEAD is no longer their baseline
    results = _sh(dst, sys.executable, "-m", "stages", "results", "--out", "res-sweep")
    print(results)
    (sweep,) = [
        g for g in json.loads((dst / "res-sweep" / "results.json").read_text()) if g["group"] == "lambda_adv=0.025"
    ]
    assert sorted(sweep["runs"]) == sorted(names) and len(names) == 2, (sweep["runs"], names)
    values = [_exp_metric(dst, n, "held_out.paper.exclusive.scale") for n in names]
    assert sweep["mean"]["paper/exclusive/scale"] == pytest.approx(sum(values) / 2, abs=1e-4)
    assert sweep["std"]["paper/exclusive/scale"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5, abs=1e-4)
    assert sweep["params"]["lambda_adv"] == 0.025 and "seed" not in sweep["params"]
    assert not {"State", "Executor", "held_out.wide.shared.shape", "data/pairs.h5"} & set(sweep["params"])
    # The README's `dvc exp show` for a terminal: 120 columns, both paper-probe distances whole.
    readme = (REPO / "README.md").read_text()
    keep = re.search(r"dvc exp show --drop '\.\*' --keep '([^']+)' --precision 3", readme)[1]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dvc",
            "exp",
            "show",
            "--no-pager",
            "-A",
            "--drop",
            ".*",
            "--keep",
            keep,
            "--precision",
            "3",
        ],
        cwd=dst,
        env=_env() | {"COLUMNS": "120"},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert (
        "held_out.paper.shared.distance_to_ideal" in r.stdout
        and "held_out.paper.exclusive.distance_to_ideal" in r.stdout
    )
    assert all(len(line) <= 120 for line in r.stdout.splitlines()) and "…" not in r.stdout, r.stdout
    assert all(n in r.stdout for n in names), r.stdout


def _exp_metric(dst, name, column):
    """A metric of one named experiment, as `dvc exp show --csv --all-commits` prints it."""
    text = _dvc(dst, "exp", "show", "--csv", "--all-commits", stdout_only=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    (row,) = [r for r in rows if r["Experiment"] == name]
    return float(row[column])


@pytest.mark.slow
def test_a_lambda_adv_queue_trains_train_shared_once_and_dvc_compares_the_runs(project):
    dst, _ = project
    _baseline(dst)
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
    # Going back to a configuration that ran, in the queue, restores both training stages and the evaluation
    # from the run-cache (evaluate's uncached outputs are metrics and plots only); the plot stage reruns.
    _dvc(dst, "exp", "run", "--queue", "-n", "q-lam1-again", "-S", "alpha_sh=0.45", "-S", "lambda_adv=0.02")
    _dvc(dst, "exp", "run", "--run-all", "-j", "1")
    back = _dvc(dst, "queue", "logs", "q-lam1-again")
    print(back)
    assert {"train_shared", "train_exclusive", "evaluate"} <= _restored(back), back
    assert not _ran(back)[0] & {"download", "pairs", "train_shared", "train_exclusive", "evaluate"}, back
    # dvc plots diff compares the two runs: per representation the six online accuracies in one plot
    # and the loss terms in another, both runs in each; the PNG figures as images.
    plots = json.loads(
        _dvc(dst, "plots", "diff", "q-lam1", "q-lam2", "--json", "-o", str(dst.parent / "dvc_plots"), stdout_only=True)
    )["data"]
    for rep in ("shared", "exclusive"):
        for plot_id in (f"{rep}_online_acc_wide", f"{rep}_online_acc_paper", f"{rep}_losses"):
            assert plot_id in plots, sorted(plots)
            (vega,) = plots[plot_id]
            assert vega["type"] == "vega" and set(vega["revisions"]) == set(runs), vega["revisions"]
    lines = {
        plot_id: {row["filename::field"] for row in plots[plot_id][0]["content"]["data"]["values"]}
        for plot_id in ("shared_online_acc_wide", "exclusive_losses")
    }
    assert lines["shared_online_acc_wide"] == {
        f"{f}.tsv::{f}" for f in ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    }
    assert lines["exclusive_losses"] == {
        f"{t}.tsv::{t.split('/')[1]}"
        for t in (
            "loss/total",
            "mi/global",
            "mi/local",
            "loss/adv_encoder",
            "loss/adv_discriminator",
            "loss/classifier",
        )
    }
    for png in ("learning_curves", "accuracy_table", "retrieval", "losses", "held_out_curves"):
        images = plots[f"metrics/plots/{png}.png"]
        assert {i["type"] for i in images} == {"image"} and {r for i in images for r in i["revisions"]} == set(runs)


def _baseline(dst):
    """The committed baseline in the workspace, whatever ran before (committed first when the test that
    commits the repro's results did not run)."""
    if "metrics/evaluate.json" not in _sh(dst, "git", "ls-files", "metrics", stdout_only=True):
        _sh(dst, "git", "add", "-A")
        _sh(dst, "git", "commit", "-qm", "baseline results")
    _sh(dst, "git", "checkout", "-q", "--", ".")
    _dvc(dst, "checkout", "-q")


# Long enough a train_shared (tiny networks: 30-100 it/s here) to be killed at its second checkpoint.
LONG = {"iters_sh": 900, "checkpoint_every": 100, "snapshot_every": 0}


def _settings(**params) -> list[str]:
    return [a for k, v in params.items() for a in ("-S", f"{k}={v}")]


@pytest.mark.slow
def test_a_killed_queued_run_resumes_in_the_next_queued_run_of_its_configuration(project, tmp_path):
    """A queue task runs in a temporary copy of the repository, deleted when it ends: its checkpoints
    live outside it (per user), so the next task of the same params, data and code resumes them."""
    dst, _ = project
    _baseline(dst)
    settings = _settings(alpha_sh=0.55, **LONG)
    _dvc(dst, "exp", "run", "--queue", "-n", "killed", "train_shared", *settings)
    since = time.time()
    run = subprocess.Popen(
        [sys.executable, "-m", "dvc", "exp", "run", "--run-all", "-j", "1"],
        cwd=dst,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed_at = _kill_at_checkpoint(run, dst / ".dvc" / "tmp", "train-shared", 200, since)
    # dvclive's step signal, in the repository the queue runs from, where VS Code's extension reads it
    signal_file = dst / ".dvc" / "tmp" / "exps" / "run" / "DVCLIVE_STEP_COMPLETED"
    assert json.loads(signal_file.read_text())["step"] >= killed_at
    run.communicate(timeout=300)
    assert re.search(r"killed\s.*Failed", _dvc(dst, "queue", "status")), _dvc(dst, "queue", "status")
    _dvc(dst, "queue", "remove", "--failed")

    _dvc(dst, "exp", "run", "--queue", "-n", "resumed", "train_shared", *settings)
    _dvc(dst, "exp", "run", "--run-all", "-j", "1")
    log = _dvc(dst, "queue", "logs", "resumed")
    print(log)
    resumed_at = int(re.search(r"resuming from iteration (\d+)", log)[1])
    assert killed_at <= resumed_at < LONG["iters_sh"], log
    assert "\r" not in log and re.search(r"iteration 900/900, .*(it/s|s/it), 00:00 left", log), log
    # ... and ends with the model an uninterrupted run of the same configuration writes.
    ref = tmp_path / "ref"
    p = yaml.safe_load((dst / "params.yaml").read_text()) | {"alpha_sh": 0.55, **LONG}
    ref.mkdir()
    (ref / "params.yaml").write_text(yaml.safe_dump(p))
    out = _sh(
        dst,
        sys.executable,
        "-m",
        "stages",
        "train-shared",
        "--pairs",
        "data/pairs.h5",
        "--model",
        str(ref / "shared.pt"),
        "--live",
        str(ref / "live"),
        "--params",
        str(ref / "params.yaml"),
        "--checkpoints",
        str(ref / "ck"),
    )
    assert "starting fresh" in out
    _dvc(dst, "exp", "apply", "resumed")
    assert (dst / "models" / "shared.pt").read_bytes() == (ref / "shared.pt").read_bytes()
    assert not list(_checkpoint_dir().glob("shared-*.pt"))  # the finished run deleted its checkpoint
    _sh(dst, "git", "checkout", "-q", "--", ".")
    _dvc(dst, "checkout", "-q")


@pytest.mark.slow
def test_two_machines_share_experiments_through_a_git_and_a_dvc_remote(project, tmp_path):
    """Machine A runs one configuration with the Slurm recipe (docs/runners/slurm_array.sh, as array task 0),
    is killed in train_shared, is requeued and resumes it, and pushes the experiment and its run history;
    worker B, running another configuration with that train_shared, restores it instead of training it;
    anyone sees A's experiment, compares it and pulls its models without training anything."""
    dst, _ = project
    _baseline(dst)
    store, origin = tmp_path / "dvc-store", tmp_path / "origin.git"
    _dvc(dst, "remote", "add", "-f", "-d", "store", str(store))
    _sh(dst, "git", "add", "-A")
    _sh(dst, "git", "commit", "-qm", "baseline and its DVC remote", "--allow-empty")
    _dvc(dst, "push", "-q")  # the baseline's data and models, as its author would
    _sh(tmp_path, "git", "clone", "-q", "--bare", str(dst), str(origin))
    commit = _sh(dst, "git", "rev-parse", "HEAD", stdout_only=True).strip()

    # A train_shared in no dvc.lock (alpha_sh), long enough to be killed at its second checkpoint.
    shared = " ".join(f"{k}={v}" for k, v in {"alpha_sh": 0.35, **LONG}.items())
    runs = tmp_path / "runs.txt"
    runs.write_text(f"other-lambda lambda_adv=0.04 seed=0 {shared}\nb-lambda lambda_adv=0.05 seed=0 {shared}\n")
    script = ["bash", str(REPO / "docs" / "runners" / "slurm_array.sh"), str(origin), commit, str(runs)]
    env_a = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_JOB_ID": "a", "DISMI_SCRATCH": str(tmp_path / "a")}
    since = time.time()
    first = subprocess.Popen(
        script, cwd=tmp_path, env=_env() | env_a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    killed_at = _kill_at_checkpoint(first, tmp_path / "a", "train-shared", 200, since)
    assert first.wait(timeout=300) != 0
    # Requeued: the same task again, from a fresh clone (the script deletes the old one).
    r = subprocess.run(script, cwd=tmp_path, env=_env() | env_a, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    print(r.stdout + r.stderr)
    assert killed_at <= int(re.search(r"resuming from iteration (\d+)", r.stdout)[1]) < LONG["iters_sh"], r.stdout
    ran, _ = _ran(r.stdout + r.stderr)
    # --pull --allow-missing: A pulled the baseline's upstream outputs instead of recomputing them
    assert ran == {"train_shared", "train_exclusive", "evaluate", "plot"}, r.stdout + r.stderr
    assert "pushed experiment other-lambda" in r.stdout

    # Worker B, another machine (its own clone and DVC cache), another lambda_adv on A's train_shared:
    # restored from the run history A pushed, not trained again.
    env_b = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_ID": "b", "DISMI_SCRATCH": str(tmp_path / "b-node")}
    rb = subprocess.run(script, cwd=tmp_path, env=_env() | env_b, capture_output=True, text=True)
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert "train_shared" in _restored(rb.stdout + rb.stderr), rb.stdout + rb.stderr
    assert _ran(rb.stdout + rb.stderr)[0] == {"train_exclusive", "evaluate", "plot"}, rb.stdout + rb.stderr
    assert _sh(tmp_path / "b-node" / "dismi-b-1", "git", "hash-object", "models/shared.pt", stdout_only=True) == _sh(
        tmp_path / "a" / "dismi-a-0", "git", "hash-object", "models/shared.pt", stdout_only=True
    )

    b = tmp_path / "b"
    _sh(tmp_path, "git", "clone", "-q", str(origin), str(b))
    _dvc(b, "exp", "pull", "origin", "other-lambda")
    assert "other-lambda" in _dvc(b, "exp", "show", "--csv", stdout_only=True)
    exp_rev = _dvc(b, "exp", "show", "--json", stdout_only=True)
    rev = next(
        e["rev"]
        for row in json.loads(exp_rev)
        for e in row.get("experiments") or []
        for e in [e["revs"][0]]
        if e.get("name") == "other-lambda"
    )
    diff = json.loads(_dvc(b, "metrics", "diff", "HEAD", rev, "--all", "--json", stdout_only=True))
    assert "held_out.wide.exclusive.distance_to_ideal" in diff["metrics/evaluate.json"]
    _dvc(b, "exp", "apply", "other-lambda")
    _dvc(b, "pull", "-q")
    assert (b / "models" / "exclusive.pt").stat().st_size > 0
    assert "up to date" in _dvc(b, "status").lower()  # B's workspace is A's run: nothing to retrain
    assert _sh(b, "git", "hash-object", "models/exclusive.pt", stdout_only=True) == _sh(
        tmp_path / "a" / "dismi-a-0", "git", "hash-object", "models/exclusive.pt", stdout_only=True
    )
