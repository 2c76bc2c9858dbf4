"""What several test files share: the tiny config, a tiny pairs file, tiny Shapes3D files, running a stage.

Helpers are fixtures: ask for `tiny` (the config), `params_file`, `run_stage`, `training_args`, `saved_shared`,
`tiny_pairs`, `grid_classes` or `write_file` by name and call what it gives; `pairs_file` is written once per session. `one_torch_thread`
(autouse) keeps the session on one torch thread. Every test runs with its own download cache and device-lock directory
(DISMI_CACHE, DISMI_LOCK_DIR), so no test reads or fills the user's ~/.cache/dismi or counts towards the
device claims of the user's runs on this machine.
"""

import colorsys
import itertools
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from dismi.data.factors import classes_to_values
from dismi.data.pairfile import PairData, write_pairs
from stages import __main__ as cli

REPO = Path(__file__).resolve().parents[1]

# The one tiny configuration: width 4, 8-dimensional S and E, 40 iterations per stage, short probes.
TINY = {
    "width": 4,
    "shared_dim": 8,
    "exclusive_dim": 8,
    "batch_size": 8,
    "lr_sh": 2e-3,
    "lr_ex": 2e-3,
    "iters_sh": 40,
    "iters_ex": 40,
    "log_every": 10,
    "checkpoint_every": 20,
    "device": "cpu",
    "seed": 0,
    "l1_reduce": "mean",
    "probe_epochs": 2,
    "probe_lr": 1e-3,
    "probe_batch_size": 16,
    "retrieval_k": 3,
    "retrieval_queries": 8,
    "critic_epochs": 2,
    "online_earlier": False,
}


@pytest.fixture(scope="session", autouse=True)
def private_cache_and_locks(tmp_path_factory):
    """DISMI_CACHE and DISMI_LOCK_DIR in a temporary folder for the whole session (subprocesses too)."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("DISMI_CACHE", str(tmp_path_factory.mktemp("dismi-cache")))
        m.setenv("DISMI_LOCK_DIR", str(tmp_path_factory.mktemp("dismi-locks")))
        yield


def _params_file(directory: Path, **overrides) -> Path:
    """directory/params.yaml: the repository's params.yaml, then TINY, then overrides."""
    params = yaml.safe_load((REPO / "params.yaml").read_text()) | TINY | overrides
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _run_stage(monkeypatch, capsys, *args) -> tuple[int, str]:
    """`python -m stages ARGS` in process, through its real main -> (exit code, stdout + stderr)."""
    monkeypatch.setattr(sys, "argv", ["stages", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code, out.out + out.err


# --------------------------------------------------------------------------- tiny pairs


def _training_args(workdir: Path, stage: str, pairs: Path, params: Path, shared: Path | None = None) -> list[str]:
    name = stage.removeprefix("train-")
    args = [stage, "--pairs", pairs, "--model", workdir / f"{name}.pt", "--checkpoints", workdir / "checkpoints"]
    args += ["--live", workdir / f"live_{name}", "--params", params]
    if shared is not None:
        args += ["--shared", shared]
    return [str(a) for a in args]


def _saved_shared(workdir: Path, pairs: Path):
    import torch

    from dismi.model.networks import Encoder, seeded
    from dismi.train import modelfile
    from dismi.util.files import file_sha256

    encoder = seeded(lambda: Encoder(4, 8), torch.Generator().manual_seed(0))
    path = workdir / "given_shared.pt"
    modelfile.save_model(path, encoder, "shared", {}, file_sha256(pairs))
    return path, encoder


def _hue(k):
    return np.array(colorsys.hsv_to_rgb(k / 10, 0.8, 0.9)) * 255


def render_toy(classes: np.ndarray) -> np.ndarray:
    """Wall, floor and object hue; object size (scale), outline (shape) and position (orientation)."""
    yy, xx = np.mgrid[:64, :64]
    img = np.empty((len(classes), 64, 64, 3))
    for i, (floor, wall, obj, scale, shape, orient) in enumerate(classes):
        img[i, :32], img[i, 32:] = _hue(wall), _hue(floor)
        r, dx, dy = 8 + 2 * scale, np.abs(xx - 14 - 2 * orient), np.abs(yy - 34)
        mask = [np.maximum(dx, dy) <= r, dx**2 + dy**2 <= r**2, (dx <= r // 2) & (dy <= r), (dx <= r) & (dy <= r // 2)][
            shape
        ]
        img[i][mask] = _hue(obj)
    return img.astype(np.uint8)


def _tiny_pairs(n_pairs: int = 48, n_test: int = 12, seed: int = 0) -> PairData:
    """Pairs sharing scale, shape and orientation, with their own hues; X rows, then Y rows; the last
    `n_test` pairs are the test split."""
    rng = np.random.default_rng(seed)
    shared = np.stack([rng.integers(0, s, n_pairs) for s in (8, 4, 15)], 1)
    hues = rng.integers(0, 10, (2, n_pairs, 3))
    classes = np.concatenate([np.concatenate([hues[v], shared], 1) for v in (0, 1)]).astype(np.int64)
    return PairData(
        images=render_toy(classes),
        classes=classes,
        source=np.arange(2 * n_pairs),
        x=np.arange(n_pairs),
        y=np.arange(n_pairs, 2 * n_pairs),
        split=(np.arange(n_pairs) >= n_pairs - n_test).astype(np.uint8),
    )


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    """tiny_pairs() written once; treat it as read-only."""
    path = tmp_path_factory.mktemp("data") / "pairs.h5"
    write_pairs(path, _tiny_pairs())
    return path


# --------------------------------------------------------------------------- tiny Shapes3D files

# A reduced grid: a subset of each factor's values (floor, wall, object, scale, shape, orientation).
SMALL_GRID = ([0, 5], [1, 9], [2, 3], [0, 7], [1, 3], [0, 7, 14])


def _grid_classes(grid=SMALL_GRID) -> np.ndarray:
    """(N, 6) class indices of every combination, in official order (orientation fastest)."""
    return np.array(list(itertools.product(*grid)), dtype=np.int64)


def _write_file(path, classes=None, images=None, labels=None, **image_options) -> np.ndarray:
    """A Shapes3D-layout file; random images unless given. Returns the images written."""
    classes = _grid_classes() if classes is None else classes
    if images is None:
        images = np.random.default_rng(0).integers(0, 256, (len(classes), 64, 64, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, **image_options)
        f.create_dataset("labels", data=classes_to_values(classes) if labels is None else labels)
    return images


# --------------------------------------------------------------------------- the helpers as fixtures


@pytest.fixture(scope="session")
def tiny() -> dict:
    """The tiny configuration (a copy: a test may change it)."""
    return dict(TINY)


@pytest.fixture(scope="session")
def params_file():
    """params_file(directory, **overrides) -> directory/params.yaml: params.yaml, then TINY, then overrides."""
    return _params_file


@pytest.fixture
def run_stage(monkeypatch, capsys):
    """run_stage(*args) -> (exit code, output) of `python -m stages ARGS`, in process."""
    return lambda *args: _run_stage(monkeypatch, capsys, *args)


@pytest.fixture(scope="session")
def training_args():
    """training_args(workdir, stage, pairs, params, shared=None) -> a training stage's command line for
    run_stage or CliRunner: model workdir/<shared|exclusive>.pt, checkpoints workdir/checkpoints, dvclive
    workdir/live_<shared|exclusive>."""
    return _training_args


@pytest.fixture(scope="session")
def saved_shared():
    """saved_shared(workdir, pairs) -> (path, encoder): a seeded width-4, 8-dimensional shared model file
    made for `pairs`, what train-exclusive's --shared takes."""
    return _saved_shared


@pytest.fixture(scope="session")
def tiny_pairs():
    """tiny_pairs(n_pairs=48, n_test=12, seed=0) -> PairData of toy images."""
    return _tiny_pairs


@pytest.fixture(scope="session")
def grid_classes():
    """grid_classes(grid=SMALL_GRID) -> (N, 6) class indices of the grid, official order."""
    return _grid_classes


@pytest.fixture(scope="session")
def write_file():
    """write_file(path, classes=None, images=None, labels=None, **h5py options) -> the images written."""
    return _write_file


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The whole session on one torch thread, its stage subprocesses too (OMP_NUM_THREADS=1, which dismi
    leaves alone: no following of other processes' load). Tiny networks gain nothing from threads, two
    threads beside another process on two cores cost several times over, and the bit-exact comparisons
    (resume, seeds, banks) need one thread count throughout, whatever else the machine runs. A test about
    threads deletes OMP_NUM_THREADS and sets and restores its own."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as m:
        m.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(before)
