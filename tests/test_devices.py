"""One device per concurrent run (dismi.util.devices): GPU claims on a faked GPU count, from threads and from
processes, and each CPU run's share of the cores."""

import json
import os
import subprocess
import sys
import threading
import time
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
        assert devices.share_cores() == 4  # the others ended: back to its share
        monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands
        torch.set_num_threads(3)
        assert devices.share_cores() == 3 and torch.get_num_threads() == 3
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


def test_a_run_records_the_thread_counts_it_summed_with(gpus, locks, monkeypatch):
    """The mistake: a draw whose threads changed mid-run (so its sums ran in another order) that reads like
    a run alone; the record says which it was."""
    gpus(0)
    monkeypatch.setattr(devices, "cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        with devices.claim("cpu") as claim:
            assert claim.use() == 8 and devices.thread_record().as_dict() == {"fewest": 8, "most": 8, "changes": 0}
            assert devices.share_cores() == 8 and devices.thread_record().changes == 0  # no change, no count
            assert devices.thread_record().describe() == "8 CPU thread(s) throughout"
            with devices.claim("cpu"):  # another run starts: half the cores, then they come back
                assert devices.share_cores() == 4
            assert devices.share_cores() == 8
            assert devices.thread_record().as_dict() == {"fewest": 4, "most": 8, "changes": 2}
            assert "4-8 CPU threads, changed 2 time(s)" in devices.thread_record().describe()
        with devices.claim("cpu") as claim:  # a new run starts a new record
            claim.use()
            assert devices.thread_record().as_dict() == {"fewest": 8, "most": 8, "changes": 0}
            # resumed from a checkpoint whose run had changed threads: the whole run's record
            resumed = devices.thread_record().after({"fewest": 2, "most": 8, "changes": 3})
            assert resumed.as_dict() == {"fewest": 2, "most": 8, "changes": 3}
            assert devices.thread_record().after(None).as_dict() == {"fewest": 8, "most": 8, "changes": 0}
    finally:
        torch.set_num_threads(before)


def test_a_training_stage_records_a_thread_change_in_its_metrics_and_model_file(
    gpus, locks, monkeypatch, tmp_path, pairs_file, params_file, training_args
):
    gpus(0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    shares = iter([2, 2, 2])  # the claim, then the logs of iterations 1 and 2; a core taken from then on
    monkeypatch.setattr(devices, "thread_share", lambda directory=None, busy=0: next(shares, 1))
    monkeypatch.setattr(devices, "tick", lambda: None)  # this machine's own load decides nothing here
    before = torch.get_num_threads()
    try:
        params = params_file(tmp_path, iters_sh=4, log_every=1)
        result = CliRunner().invoke(app, training_args(tmp_path, "train-shared", pairs_file, params))
        assert result.exit_code == 0, result.output
        assert "1-2 CPU threads, changed 1 time(s)" in result.output
        record = {"fewest": 1, "most": 2, "changes": 1}
        assert torch.load(tmp_path / "shared.pt", weights_only=True)["threads"] == record
        assert json.loads((tmp_path / "live_shared" / "metrics.json").read_text())["threads"] == record
    finally:
        torch.set_num_threads(before)


# ---- other processes' load -------------------------------------------------------------------


def test_busy_cpu_seconds_reads_proc_stat_without_idle_iowait_or_steal():
    tick = os.sysconf("SC_CLK_TCK")
    stat = f"cpu  {tick} 0 {2 * tick} 50000 700 0 {tick} 900 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
    assert devices.busy_cpu_seconds(stat) == pytest.approx(4.0)
    assert devices.busy_cpu_seconds("intr 1 2\n") is None


def test_threads_leave_a_core_to_each_busy_thread_of_other_processes(locks, monkeypatch):
    """The mistake: one OpenMP thread per core beside a CPU-bound process, so every parallel region
    waits for the core the scheduler lent away (0.35x alone's speed)."""
    monkeypatch.setattr(devices, "cores", lambda: 4)
    assert devices.thread_share(busy=0) == 4
    assert devices.thread_share(busy=1) == 3
    assert devices.thread_share(busy=9) == 1
    with devices.claim("cpu"), devices.claim("cpu"):  # two runs: 2 cores each, unless others take more
        assert devices.thread_share(busy=1) == 2
        assert devices.thread_share(busy=3) == 1


@pytest.mark.skipif(devices.cores() < 2, reason="needs two cores to give one away")
def test_a_cpu_run_gives_a_core_to_a_busy_process_and_takes_it_back(locks, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    n = torch.get_num_threads()
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with devices.claim("cpu") as claim:
            claim.use()
            watch = devices._watch[0]
            watch.every = 1.0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and torch.get_num_threads() >= devices.cores():
                devices.tick()
                time.sleep(0.01)
            assert watch.busy >= 1 and torch.get_num_threads() == max(1, devices.cores() - watch.busy)
            spin.kill()
            spin.wait()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and watch.busy > 0:
                devices.tick()
                time.sleep(0.01)
            assert torch.get_num_threads() == devices.thread_share(busy=watch.busy)
        assert not devices.following_load()  # released: library code outside a run is left alone
    finally:
        spin.kill()
        torch.set_num_threads(n)
