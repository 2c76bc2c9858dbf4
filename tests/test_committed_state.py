"""The committed params.yaml, dvc.lock and metrics/ describe one and the same run (README, "Set up and
run"): every param the lock recorded is the committed value, and every metric, plot and figure the lock
recorded under metrics/ hashes (as DVC hashes it) to the committed file. Read from git's HEAD, so a
workspace changed by `dvc exp run` does not matter."""

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = {"download", "pairs", "train_shared", "train_exclusive", "evaluate", "plot"}


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, check=True).stdout


def _committed(path: str) -> bytes:
    return _git("show", f"HEAD:{path}")


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def dvc_hash(path: str) -> str:
    """DVC's md5 of a committed file, or of a committed directory (`<md5>.dir`: the md5 of the JSON list of
    its files' {md5, relpath}, sorted by relpath)."""
    files = _git("ls-tree", "-r", "--name-only", "HEAD", "--", path).decode().split()
    if files == [path]:
        return _md5(_committed(path))
    entries = sorted(
        ({"md5": _md5(_committed(f)), "relpath": f[len(path) + 1 :]} for f in files), key=lambda e: e["relpath"]
    )
    return _md5(json.dumps(entries, sort_keys=True).encode()) + ".dir"


@pytest.fixture(scope="module")
def lock():
    try:
        return yaml.safe_load(_committed("dvc.lock"))
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.fail(
            "dvc.lock is not committed: run `dvc repro` with the committed params and commit "
            "dvc.lock and metrics/ together"
        )


def test_the_lock_covers_every_stage(lock):
    assert set(lock["stages"]) == STAGES


def test_the_lock_recorded_the_committed_params(lock):
    params = yaml.safe_load(_committed("params.yaml"))
    recorded = {
        (stage, key): value
        for stage, body in lock["stages"].items()
        for file, values in body.get("params", {}).items()
        for key, value in values.items()
    }
    assert recorded, "the lock records no params"
    assert {k: v for k, v in recorded.items() if params.get(k[1]) != v} == {}


def _uncached() -> set[str]:
    """The outputs dvc.yaml keeps in git (cache: false): the ones a commit holds."""
    stages = yaml.safe_load(_committed("dvc.yaml"))["stages"]
    return {
        path
        for body in stages.values()
        for kind in ("outs", "metrics", "plots")
        for entry in body.get(kind, [])
        if isinstance(entry, dict)
        for path, opts in entry.items()
        if isinstance(opts, dict) and opts.get("cache") is False
    }


def test_the_committed_metrics_are_the_ones_the_lock_recorded(lock):
    kept = _uncached()
    outs = [o for body in lock["stages"].values() for o in body.get("outs", []) if o["path"] in kept]
    assert len(outs) >= 8  # dvclive metrics and curves of both stages, evaluation, figures
    assert {o["path"]: o["md5"] for o in outs if dvc_hash(o["path"]) != o["md5"]} == {}
