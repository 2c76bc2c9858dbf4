"""dismi.util.files (atomic writes, hashing, the output guard) and every stage's guard through the CLI."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dismi.util.errors import DismiError
from dismi.util.files import atomic_write, file_sha256, guard_outputs, write_text_atomic

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- atomic writes, hashing


def test_atomic_write_renames_into_place_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    assert atomic_write(path, lambda tmp: tmp.write_text("new")) == path
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["f.txt"]
    write_text_atomic(path, "newer")
    assert path.read_text() == "newer" and [p.name for p in path.parent.iterdir()] == ["f.txt"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_atomic_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, error):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise error

    with pytest.raises(error):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 9000  # more than one 1 MB block
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the guard


def _one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


def test_guard_deletes_stale_outputs_but_not_inputs_or_kept_paths(tmp_path):
    for name in ("in", "out", "ckpt"):
        (tmp_path / name).write_text(name)
    guard_outputs([tmp_path / "in"], [tmp_path / "out", tmp_path / "never-written"], kept=[tmp_path / "ckpt"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "in"]


@pytest.mark.parametrize("spelling", ["same", "dotted", "relative"])
def test_guard_refuses_an_output_that_is_an_input_before_deleting_anything(tmp_path, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "in.h5").write_text("precious")
    (tmp_path / "stale.json").write_text("older output")
    out = {
        "same": tmp_path / "d" / "in.h5",
        "dotted": tmp_path / "d" / ".." / "d" / "in.h5",
        "relative": tmp_path / "d" / "in.h5",
    }[spelling]
    inputs = ["d/in.h5"] if spelling == "relative" else [tmp_path / "d" / "in.h5"]
    with pytest.raises(DismiError) as e:
        guard_outputs(inputs, [tmp_path / "stale.json", out])
    assert _one_line(e).startswith(f"output {out} is also an input")
    assert (tmp_path / "d" / "in.h5").read_text() == "precious"
    assert (tmp_path / "stale.json").exists()  # refused before anything was deleted


def test_guard_refuses_a_kept_path_that_is_an_input(tmp_path):
    (tmp_path / "pairs.h5").write_text("precious")
    with pytest.raises(DismiError) as e:
        guard_outputs([tmp_path / "pairs.h5"], [tmp_path / "model.pt"], kept=[tmp_path / "pairs.h5"])
    assert "is also an input" in _one_line(e) and (tmp_path / "pairs.h5").exists()


def test_guard_refuses_an_output_named_twice(tmp_path):
    with pytest.raises(DismiError) as e:
        guard_outputs([], [tmp_path / "a.json", tmp_path / "b.md", tmp_path / "a.json"])
    assert "is named twice" in _one_line(e)


def test_guard_refuses_an_existing_directory_and_an_output_under_a_file(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inside").write_text("kept")
    (tmp_path / "stale").write_text("older output")
    with pytest.raises(DismiError) as e:
        guard_outputs([], [tmp_path / "stale", tmp_path / "dir"])
    assert _one_line(e) == f"output {tmp_path / 'dir'} is an existing directory: name a file to write instead"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DismiError) as e:
        guard_outputs([], [tmp_path / "stale", tmp_path / "file" / "sub" / "a.png"])
    assert _one_line(e).endswith(f"{tmp_path / 'file'} is a file, not a directory")
    assert (tmp_path / "dir" / "inside").exists() and (tmp_path / "stale").exists()


# --------------------------------------------------------------------------- every stage, through the CLI

# For each stage: an output option and an input option of its dvc.yaml command line.
COLLISIONS = {
    "pairs": ("--out", "--data"),
    "train-shared": ("--model", "--pairs"),
    "train-exclusive": ("--model", "--shared"),
    "evaluate": ("--metrics", "--pairs"),
}


def _stage_args(params_file, tmp_path, stage: str) -> list[str]:
    """The stage's command line from dvc.yaml, its paths under tmp_path, with a tiny params file."""
    cmd = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage.replace("-", "_")]["cmd"].split()[3:]
    args = [
        str(tmp_path / a) if a.startswith(("data/", "models/", "metrics/")) or a == "checkpoints" else a for a in cmd
    ]
    if stage != "plot":
        args += ["--params", str(params_file(tmp_path))]
    return args


def _set(args: list[str], flag: str, value) -> list[str]:
    args = list(args)
    args[args.index(flag) + 1] = str(value)
    return args


def test_pairs_out_equal_to_data_is_refused_and_the_data_survives(tmp_path, params_file):
    data = tmp_path / "shapes3d.h5"
    data.write_bytes(b"the only copy")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages",
            "pairs",
            "--data",
            str(data),
            "--out",
            str(data),
            "--params",
            str(params_file(tmp_path)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"error: output {data} is also an input ({data}): write the output to another path"
    ], r.stderr
    assert data.read_bytes() == b"the only copy"


@pytest.mark.parametrize("stage", sorted(COLLISIONS))
def test_each_stage_refuses_an_output_that_is_one_of_its_inputs(
    tmp_path, monkeypatch, capsys, stage, run_stage, params_file
):
    out_flag, in_flag = COLLISIONS[stage]
    args = _stage_args(params_file, tmp_path, stage)
    precious = tmp_path / "precious"
    precious.write_bytes(b"an input")
    code, text = run_stage(*_set(_set(args, in_flag, precious), out_flag, precious))
    assert code == 1 and text.count("\n") == 1 and text.startswith(f"error: output {precious} is also an input")
    assert precious.read_bytes() == b"an input"


def test_plot_refuses_an_output_that_is_one_of_its_inputs(tmp_path, monkeypatch, capsys, run_stage, params_file):
    args = _stage_args(params_file, tmp_path, "plot")
    out = tmp_path / "plots"
    out.mkdir()
    (out / "retrieval.png").write_bytes(b"an input")
    code, text = run_stage(*_set(_set(args, "--out", out), "--metrics", out / "retrieval.png"))
    assert code == 1 and text.count("\n") == 1 and "is also an input" in text
    assert (out / "retrieval.png").read_bytes() == b"an input"


def test_download_refuses_to_write_over_the_file_its_url_names(tmp_path, monkeypatch, capsys, params_file, run_stage):
    source = tmp_path / "3dshapes.h5"
    source.write_bytes(b"the only copy")
    params = params_file(tmp_path, dataset="shapes3d", shapes3d_url=source.as_uri())
    code, text = run_stage("download", "--out", source, "--params", params)
    assert code == 1 and text.count("\n") == 1 and text.startswith(f"error: output {source} is also an input")
    assert source.read_bytes() == b"the only copy"


@pytest.mark.parametrize(
    "stage, flag",
    [
        ("download", "--out"),
        ("pairs", "--out"),
        ("train-shared", "--model"),
        ("train-exclusive", "--model"),
        ("evaluate", "--curves"),
        ("plot", None),
    ],
)
def test_each_stage_refuses_an_output_that_is_a_directory_in_one_line(
    tmp_path, monkeypatch, capsys, stage, flag, params_file, run_stage
):
    args = _stage_args(params_file, tmp_path, stage)
    if stage == "download":
        args = ["download", "--out", "x", "--params", str(params_file(tmp_path, dataset="synthetic"))]
    directory = tmp_path / "a directory"
    if flag is None:  # plot writes fixed names under --out
        args = _set(args, "--out", tmp_path)
        directory = tmp_path / "losses.png"
    else:
        args = _set(args, flag, directory)
    (directory / "inside").mkdir(parents=True)
    code, text = run_stage(*args)
    assert code == 1 and text == f"error: output {directory} is an existing directory: name a file to write instead\n"
    assert (directory / "inside").is_dir()
