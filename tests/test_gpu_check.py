"""docs/runners/gpu_check.sh, the prepared GPU readiness run, at toy sizes on the CPU: so it still runs
when a GPU is lent (its every step but the compiled bench, which CPUs refuse)."""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_runs_every_step_at_tiny_sizes(tmp_path):
    env = os.environ | {"DISMI_GPU_CHECK_DIR": str(tmp_path / "work"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        ["bash", "docs/runners/gpu_check.sh", "--tiny"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    for step in ("== 1. bench", "== 2. shared stage", "== 3. held-out wide probe on S"):
        assert step in out, out
    rows = re.findall(r"^(shared|exclusive) +\d+\.\d+ +\d+\.\d+ ", out, flags=re.M)  # bench's it/s rows
    assert out.count("float32") == 2 and rows == ["shared", "exclusive"] * 2, out
    probe = next(line for line in out.splitlines() if line.startswith("held-out wide probe on S: "))
    assert probe.count("%") == 6
    assert (tmp_path / "work" / "shared.pt").is_file()  # its work files stay in its own folder
