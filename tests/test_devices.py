"""One device per concurrent run (dismi.util.devices): GPU claims on a faked GPU count, from threads and from
processes, and each CPU run's share of the cores."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dismi.util import devices
from dismi.util.errors import DismiError
from stages.__main__ import app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def gpus(monkeypatch):
    """Pretend `n` GPUs are visible (no GPU needed)."""

    def fake(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return fake


@pytest.fixture
def locks(tmp_path, monkeypatch):
    d = tmp_path / "locks"
    monkeypatch.setenv("DISMI_LOCK_DIR", str(d))
    return d


def _claim_at_once(n: int, name: str = "auto") -> list[devices.Claim]:
    """n claims from n threads released together."""
    claims, go = [None] * n, threading.Barrier(n)

    def run(i):
        go.wait()
        claims[i] = devices.claim(name)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return claims


def test_concurrent_runs_get_a_gpu_each_while_any_is_free(gpus, locks):
    gpus(4)
    claims = _claim_at_once(4)
    assert sorted(c.device.index for c in claims) == [0, 1, 2, 3]
    assert {c.device.type for c in claims} == {"cuda"}
    # A fifth run shares a GPU (all four are busy): the lowest index among the least loaded.
    fifth = devices.claim("auto")
    assert fifth.device == torch.device("cuda", 0)
    # A run ends: the next one gets its GPU, not a busy one.
    (on_2,) = [c for c in claims if c.device.index == 2]
    on_2.release()
    again = devices.claim("cuda")
    assert again.device == torch.device("cuda", 2)
    # One run on each GPU again: the next two go to the least loaded, lowest index first.
    fifth.release()
    sixth, seventh = devices.claim("auto"), devices.claim("auto")
    assert (sixth.device.index, seventh.device.index) == (0, 1)
    assert devices.live_claims() == 6


def test_eight_runs_on_four_gpus_put_two_on_each(gpus, locks):
    gpus(4)
    claims = _claim_at_once(8)
    per_gpu = [sum(c.device.index == i for c in claims) for i in range(4)]
    assert per_gpu == [2, 2, 2, 2]
    for c in claims:
        c.release()
    assert devices.live_claims() == 0


_CLAIMANT = """
import sys, torch
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 3
from dismi.util import devices
claim = devices.claim("auto")
print(claim.device, flush=True)
sys.stdin.readline()  # hold the claim until told to go
"""


def _claimant(env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CLAIMANT], cwd=REPO, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )


def test_separate_processes_claim_separate_gpus_and_a_killed_one_frees_its_gpu(locks):
    env = dict(os.environ, DISMI_LOCK_DIR=str(locks), OMP_NUM_THREADS="1")
    procs = [_claimant(env) for _ in range(3)]
    try:
        got = [p.stdout.readline().strip() for p in procs]
        assert sorted(got) == ["cuda:0", "cuda:1", "cuda:2"]
        victim = procs[got.index("cuda:1")]
        victim.kill()  # kill -9: no cleanup code runs, the kernel drops the lock
        victim.wait()
        procs.append(_claimant(env))
        assert procs[-1].stdout.readline().strip() == "cuda:1"
    finally:
        for p in procs:
            if p.poll() is None:
                p.stdin.write("\n")
                p.stdin.flush()
                p.wait(timeout=60)


def test_explicit_devices_and_errors(gpus, locks):
    gpus(0)
    assert devices.claim("auto").device == torch.device("cpu")
    with pytest.raises(DismiError, match="no CUDA device is visible"):
        devices.claim("cuda")
    with pytest.raises(DismiError, match="not one of"):
        devices.claim("tpu")
    gpus(2)
    assert devices.claim("cpu").device == torch.device("cpu")
    pinned = devices.claim("cuda:1")
    assert pinned.device == torch.device("cuda", 1)
    assert devices.claim("cuda").device == torch.device("cuda", 0)  # cuda:1 is taken
    pinned.release()
    with pytest.raises(DismiError, match="only 2 CUDA"):
        devices.claim("cuda:2")


def test_cpu_runs_share_the_cores(gpus, locks, monkeypatch):
    gpus(0)
    monkeypatch.setattr(devices, "cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        claims = [devices.claim("auto")]
        assert devices.thread_share() == 8
        claims.append(devices.claim("auto"))
        assert devices.thread_share() == 4
        assert devices.share_cores() == 4 and torch.get_num_threads() == 4
        claims += [devices.claim("cpu") for _ in range(8)]
        assert devices.thread_share() == 1  # ten runs on eight cores: at least one thread each
        for c in claims[2:]:
            c.release()
        assert devices.share_cores() == 4  # a run starting now: its share of the cores
        monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands
        torch.set_num_threads(3)
        assert devices.share_cores() == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_a_run_keeps_the_thread_count_it_started_with(gpus, locks, monkeypatch):
    """The mistake: a run whose threads change when other runs start or end, so it sums in another order
    from then on and its bytes depend on its neighbours."""
    gpus(0)
    monkeypatch.setattr(devices, "cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        with devices.claim("cpu") as claim:
            assert claim.bind() == 8
            with devices.claim("cpu"):  # another run starts beside it
                assert torch.get_num_threads() == 8
            assert torch.get_num_threads() == 8
    finally:
        torch.set_num_threads(before)


def test_a_training_stage_claims_a_slot_shares_the_cores_and_releases_it(
    gpus, locks, monkeypatch, tmp_path, pairs_file, params_file, training_args
):
    gpus(0)
    monkeypatch.setattr(devices, "cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    other_run = devices.claim("auto")  # another run on this machine
    before = torch.get_num_threads()
    try:
        params = params_file(tmp_path, iters_sh=2, log_every=1)
        result = CliRunner().invoke(app, training_args(tmp_path, "train-shared", pairs_file, params))
        assert result.exit_code == 0, result.output
        assert "device cpu" in result.output and "1 CPU thread(s)" in result.output  # 2 cores, 2 runs
        assert devices.live_claims() == 1  # its own claim ended with it
    finally:
        other_run.release()
        torch.set_num_threads(before)


def test_a_training_stage_records_its_thread_count_once_in_its_metrics_and_model_file(
    gpus, locks, monkeypatch, tmp_path, pairs_file, params_file, training_args
):
    gpus(0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(devices, "cores", lambda: 2)
    before = torch.get_num_threads()
    try:
        params = params_file(tmp_path, iters_sh=4, log_every=1)
        result = CliRunner().invoke(app, training_args(tmp_path, "train-shared", pairs_file, params))
        assert result.exit_code == 0, result.output
        assert "2 CPU thread(s) for the whole run" in result.output
        assert torch.load(tmp_path / "shared.pt", weights_only=True)["threads"] == 2
        assert json.loads((tmp_path / "live_shared" / "metrics.json").read_text())["threads"] == 2
        assert not (tmp_path / "live_shared" / "plots" / "metrics" / "threads.tsv").exists()  # a constant, no curve
    finally:
        torch.set_num_threads(before)


# ---- other processes' load --------------------------------------------------------------------


def _train_shared_weights(tmp_path: Path, pairs: Path, params: Path, name: str) -> dict[str, torch.Tensor]:
    """train-shared in a fresh process, its torch threads chosen by its claim -> the model file's weights."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    work = tmp_path / name
    args = [sys.executable, "-m", "stages", "train-shared", "--pairs", pairs, "--model", work / "shared.pt"]
    args += ["--checkpoints", work / "checkpoints", "--live", work / "live", "--params", params]
    r = subprocess.run([str(a) for a in args], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    saved = torch.load(work / "shared.pt", weights_only=True)
    return {"final": saved["state_dict"], **{f"snapshot {k}": w for k, w in saved["snapshots"].items()}}


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="needs two cores for a run of two threads and a process beside it"
)
def test_a_run_beside_a_cpu_bound_process_writes_the_same_weights_as_alone(tmp_path, pairs_file, params_file, locks):
    """The mistake: threads that follow other processes' load, so a run beside `yes > /dev/null` sums in
    another order and writes other weights than the same run alone. Long enough (several seconds) for a
    load-following run to have changed its threads."""
    params = params_file(tmp_path, width=8, iters_sh=600, log_every=100, checkpoint_every=600, snapshot_every=200)
    alone = _train_shared_weights(tmp_path, pairs_file, params, "alone")
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        beside = _train_shared_weights(tmp_path, pairs_file, params, "beside")
    finally:
        spin.kill()
        spin.wait()
    assert alone.keys() == beside.keys()
    for key in alone:
        different = [k for k in alone[key] if not torch.equal(alone[key][k], beside[key][k])]
        assert not different, f"{key}: {len(different)} tensor(s) differ, e.g. {different[:3]}"
