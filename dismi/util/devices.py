"""Which device a run uses, and how many CPU threads, when several runs share one machine.

`claim(name)` takes a slot for the run: with CUDA visible ('auto' or 'cuda'), a slot on the GPU with the
fewest runs on it, so every run gets a GPU of its own while any GPU is free and never two share one
while another idles; without CUDA ('auto' or 'cpu'), a CPU slot. A slot is an exclusive flock(2) lock on
a file in a per-user lock directory (DISMI_LOCK_DIR, else <tmp>/dismi-<uid>/locks: per machine, as the
GPUs are). The kernel drops the lock when the claim is released or the process ends, however it ends
(kill -9 too), so no stale claim outlives its run. Claims are decided under one more lock, so two runs
starting at once cannot pick the same GPU.

The live claims also share the cores: when a CPU run starts, `share_cores()` gives it cores // live
claims torch threads (at least 1), so two CPU runs on two cores get one thread each instead of four
OpenMP threads spinning against each other. The count is chosen once and kept to the run's end: a
different count sums in another order, and a run's bytes must not depend on what else ran beside it.
An OMP_NUM_THREADS the user set is left alone.
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import torch

from dismi.util.errors import DismiError

LOCK_DIR_ENV = "DISMI_LOCK_DIR"
_SLOT = re.compile(r"(?P<device>[\w-]+)\.(?P<k>\d+)\.lock")


def lock_dir() -> Path:
    """DISMI_LOCK_DIR, else <tmp>/dismi-<uid>/locks; created (mode 700) if missing."""
    d = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"dismi-{os.getuid()}" / "locks")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


# torch's own choice of intra-op threads (the physical cores), read before anything here changes it
_TORCH_THREADS = torch.get_num_threads()


def cores() -> int:
    """Cores a run may use: torch's default thread count (physical cores, so no two threads share a
    hyper-threaded core), within this process's affinity mask (taskset, cpusets)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = os.cpu_count() or 1
    return max(1, min(_TORCH_THREADS, allowed))


@dataclass
class Claim:
    """A run's slot: `device` to train on; the lock is held until release(), until the process ends, or
    until the Claim is garbage-collected: keep it (a `with` block) while the run lasts."""

    device: torch.device
    slot: str  # the lock file's name, e.g. cuda0.0.lock: GPU 0, its first run
    _file: IO | None = field(default=None, repr=False)

    def bind(self) -> int:
        """Make the claimed GPU torch's current CUDA device (so a bare 'cuda' anywhere means it too) and
        give this process its share of the cores, for the rest of the run -> the torch threads it uses."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        return share_cores()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the only descriptor drops the flock
            self._file = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _try_lock(path: Path) -> IO | None:
    """The open file, locked exclusively; None when another claim holds it."""
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _held(path: Path) -> bool:
    f = _try_lock(path)
    if f is None:
        return True
    f.close()
    return False


@contextmanager
def _deciding(directory: Path) -> Iterator[None]:
    """One claimant at a time looks at and takes slots."""
    with open(directory / "claiming.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _slots(directory: Path) -> dict[str, list[int]]:
    """device key -> slot numbers held now."""
    held: dict[str, list[int]] = {}
    for path in sorted(directory.glob("*.lock")):
        m = _SLOT.fullmatch(path.name)
        if m and _held(path):
            held.setdefault(m["device"], []).append(int(m["k"]))
    return held


def _gpu_keys() -> list[str]:
    """One key per visible GPU: its UUID where torch gives it (the same GPU under any
    CUDA_VISIBLE_DEVICES), else its index."""
    keys = []
    for i in range(torch.cuda.device_count()):
        try:
            uuid = str(torch.cuda.get_device_properties(i).uuid)
            keys.append("cuda-" + re.sub(r"[^\w-]", "", uuid) if uuid else f"cuda{i}")
        except Exception:  # no driver to ask (a faked device count) or an old torch
            keys.append(f"cuda{i}")
    return keys


def _take(directory: Path, key: str, held: dict[str, list[int]]) -> tuple[str, IO]:
    k = 0
    while True:
        name = f"{key}.{k}.lock"
        if k not in held.get(key, []):
            f = _try_lock(directory / name)
            if f is not None:
                return name, f
        k += 1


def claim(name: str = "auto", *, directory: Path | None = None) -> Claim:
    """A slot for one run on the device `name` names: 'auto' (a GPU when CUDA is present, else the
    CPU), 'cuda' (a GPU; an error without one), 'cuda:N' (that GPU) or 'cpu'.

    Of the visible GPUs it takes the one with the fewest live claims, the lowest index among equals.
    Release it (or use it as a context manager) when the run ends.
    """
    if name not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", name):
        raise DismiError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N")
    gpu = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    if gpu and not torch.cuda.is_available():
        raise DismiError(f"device={name!r} but no CUDA device is visible: set device to auto or cpu")
    directory = directory or lock_dir()
    with _deciding(directory):
        held = _slots(directory)
        if not gpu:
            slot, f = _take(directory, "cpu", held)
            return Claim(torch.device("cpu"), slot, f)
        keys = _gpu_keys()
        if ":" in name:
            index = int(name.split(":")[1])
            if index >= len(keys):
                raise DismiError(f"device={name!r} but only {len(keys)} CUDA device(s) are visible")
        else:
            index = min(range(len(keys)), key=lambda i: (len(held.get(keys[i], [])), i))
        slot, f = _take(directory, keys[index], held)
        return Claim(torch.device("cuda", index), slot, f)


def live_claims(directory: Path | None = None) -> int:
    """Claims held now on this machine by any process, this one included."""
    directory = directory or lock_dir()
    with _deciding(directory):
        return sum(len(k) for k in _slots(directory).values())


def thread_share(directory: Path | None = None) -> int:
    """This run's share of the cores: cores // live claims, at least 1."""
    return max(1, cores() // max(1, live_claims(directory)))


def share_cores(directory: Path | None = None) -> int:
    """Set torch's intra-op threads to this run's share of the cores -> the threads it uses. Called once,
    when a run starts. When the user set OMP_NUM_THREADS, torch already follows it and it is left alone."""
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(thread_share(directory))
    return torch.get_num_threads()


def describe(device: torch.device | str) -> str:
    """The device's model name, as model files record it: e.g. 'NVIDIA H200', or the CPU's model."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine() or "cpu"
    return str(device)


CACHE_FRACTION = 0.25  # of the memory free when a table is built


def cache_budget(device: torch.device | str) -> int:
    """Bytes a run may spend on a table computed once (the exclusive stage's frozen shared codes): a
    quarter of the device's free memory (the GPU's; for the CPU, the memory the kernel reports
    available)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(CACHE_FRACTION * free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(CACHE_FRACTION * int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        return int(CACHE_FRACTION * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # unknown: build no table
        return 0
