"""Both training stages through the CLI on a tiny structured pairs file (width 4, a few dozen iterations)."""

import csv
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from dismi.data.factors import FACTORS
from dismi.data.pairfile import write_pairs
from dismi.model import losses
from dismi.model.networks import Encoder, seeded
from dismi.train import modelfile, training
from dismi.util import devices
from dismi.util.errors import DismiError
from dismi.util.files import file_sha256
from stages import _driver
from stages.__main__ import app


@pytest.fixture(scope="session")
def run_training(params_file, training_args):
    """run_training(workdir, stage, pairs, shared=None, **overrides) -> CliRunner result of the training stage
    in `workdir` with the repo's params.yaml + tiny + overrides."""

    def run(workdir: Path, stage: str, pairs: Path, shared: Path | None = None, **overrides):
        return CliRunner().invoke(app, training_args(workdir, stage, pairs, params_file(workdir, **overrides), shared))

    return run


def _tsv(workdir: Path, name: str, metric: str) -> list[tuple[int, float]]:
    with open(workdir / f"live_{name}" / "plots" / "metrics" / f"{metric}.tsv") as f:
        return [(int(r["step"]), float(r[metric.split("/")[-1]])) for r in csv.DictReader(f, delimiter="\t")]


def _checkpoints(workdir: Path, name: str) -> list[Path]:
    """The checkpoints a stage left in workdir/checkpoints: <name>-<fingerprint>.pt."""
    return sorted((workdir / "checkpoints").glob(f"{name}-*.pt"))


def _checkpoint_iteration(workdir: Path, name: str) -> int:
    (path,) = _checkpoints(workdir, name)
    return torch.load(path, weights_only=True)["iteration"]


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


def _assert_same_weights(a: Path, b: Path):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _mi(workdir: Path, name: str) -> list[float]:
    g, l = _tsv(workdir, name, "mi/global"), _tsv(workdir, name, "mi/local")
    return [a + b for (_, a), (_, b) in zip(g, l)]


def _interrupt_at_second_checkpoint(monkeypatch):
    """Simulate a kill after the first checkpoint and after logging past it."""
    real, calls = modelfile.save_checkpoint, []

    def save(path, state, fingerprint):
        calls.append(state["iteration"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, state, fingerprint)

    monkeypatch.setattr(modelfile, "save_checkpoint", save)


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory, pairs_file, run_training):
    workdir = tmp_path_factory.mktemp("shared")
    result = run_training(workdir, "train-shared", pairs_file)
    assert result.exit_code == 0, result.output
    return workdir


@pytest.fixture(scope="module")
def exclusive_run(tmp_path_factory, pairs_file, shared_run, run_training):
    workdir = tmp_path_factory.mktemp("exclusive")
    result = run_training(workdir, "train-exclusive", pairs_file, shared=shared_run / "shared.pt")
    assert result.exit_code == 0, result.output
    return workdir


# --------------------------------------------------------------------------- shared stage


def test_shared_stage_writes_model_and_dvclive_metrics_and_drops_its_finished_checkpoint(shared_run, pairs_file, tiny):
    blob = torch.load(shared_run / "shared.pt", weights_only=True)
    assert blob["kind"] == "shared" and blob["config"] == {"width": 4, "out_dim": 8}
    assert blob["params"]["alpha_sh"] == 0.5 and blob["params"]["iters_sh"] == tiny["iters_sh"]
    assert "checkpoint_every" not in blob["params"]  # it changes no output: not tracked, not recorded
    assert blob["data_sha256"] == file_sha256(pairs_file)
    # What it was trained with: the device, its model name and the torch version.
    assert blob["device"] == "cpu" and blob["torch_version"] == torch.__version__
    assert blob["device_name"] and blob["device_name"] in (
        open("/proc/cpuinfo").read() + platform.processor() + platform.machine() + "cpu"
    )
    encoder, meta = modelfile.load_model(shared_run / "shared.pt")
    assert not encoder.training and meta["kind"] == "shared" and meta["torch_version"] == torch.__version__
    # The model file is the result; the finished checkpoint is deleted (DVC's run-cache restores the stage).
    assert _checkpoints(shared_run, "shared") == []
    summary = yaml.safe_load((shared_run / "live_shared" / "metrics.json").read_text())
    assert set(summary["loss"]) == {"total", "l1", "classifier"}
    assert set(summary["mi"]) == {"global", "local"}  # maximised: not under loss/
    assert set(summary["acc_wide"]["shared"]) == set(FACTORS) and summary["step"] == tiny["iters_sh"]
    assert all(0 <= a <= 1 for a in summary["acc_wide"]["shared"].values())
    assert [s for s, _ in _tsv(shared_run, "shared", "mi/global")] == [10, 20, 30, 40]


def test_shared_stage_mi_terms_improve(shared_run):
    mi = _mi(shared_run, "shared")
    assert mi[0] == pytest.approx(-8 * np.log(2), abs=0.02)  # global + local, X + Y: untrained critics
    assert mi[-1] > mi[0] + 0.03


def test_two_seeded_runs_give_identical_weights_and_another_seed_does_not(
    tmp_path, pairs_file, shared_run, run_training
):
    assert run_training(tmp_path / "again", "train-shared", pairs_file).exit_code == 0
    _assert_same_weights(shared_run / "shared.pt", tmp_path / "again" / "shared.pt")
    assert run_training(tmp_path / "seed1", "train-shared", pairs_file, seed=1, iters_sh=1).exit_code == 0
    assert not torch.equal(
        _weights(tmp_path / "seed1" / "shared.pt")["dense.weight"], _weights(shared_run / "shared.pt")["dense.weight"]
    )


def _killed_run(run_training, monkeypatch, tmp_path, stage, pairs_file, **overrides):
    """Run `stage` interrupted at its second checkpoint -> the failed run's result."""
    with monkeypatch.context() as m:
        _interrupt_at_second_checkpoint(m)
        result = run_training(tmp_path, stage, pairs_file, **overrides)
    assert result.exit_code != 0
    return result


def test_killed_shared_run_resumes_from_its_checkpoint_and_ends_as_if_never_stopped(
    tmp_path, pairs_file, shared_run, monkeypatch, run_training
):
    _killed_run(run_training, monkeypatch, tmp_path, "train-shared", pairs_file)
    assert not (tmp_path / "shared.pt").exists()
    assert _checkpoint_iteration(tmp_path, "shared") == 20
    assert [s for s, _ in _tsv(tmp_path, "shared", "mi/global")] == [10, 20, 30, 40]  # logged past it
    # DVC deletes a stage's outputs before it reruns it, the dvclive directory too: the curves logged
    # before the checkpoint come back from the checkpoint.
    shutil.rmtree(tmp_path / "live_shared")
    second = run_training(tmp_path, "train-shared", pairs_file)
    assert second.exit_code == 0, second.output
    assert "resuming from iteration 20" in second.output
    _assert_same_weights(shared_run / "shared.pt", tmp_path / "shared.pt")
    assert (tmp_path / "shared.pt").read_bytes() == (shared_run / "shared.pt").read_bytes()
    for metric in ("mi/global", "loss/total", "acc_wide/shared/shape"):
        assert _tsv(tmp_path, "shared", metric) == _tsv(shared_run, "shared", metric)  # no gaps, no repeats
    assert _checkpoints(tmp_path, "shared") == []


def test_a_killed_run_whose_checkpoint_every_changed_still_resumes(
    tmp_path, pairs_file, shared_run, monkeypatch, run_training
):
    # checkpoint_every changes no output, so DVC does not track it and the checkpoint does not depend on it.
    _killed_run(run_training, monkeypatch, tmp_path, "train-shared", pairs_file)
    second = run_training(tmp_path, "train-shared", pairs_file, checkpoint_every=7)
    assert second.exit_code == 0, second.output
    assert "resuming from iteration 20" in second.output
    assert (tmp_path / "shared.pt").read_bytes() == (shared_run / "shared.pt").read_bytes()


def _code_copy(tmp_path: Path) -> Path:
    """A copy of the code the stages run (dismi/, stages/), for a test to edit."""
    root = tmp_path / "code"
    for package in _driver.CODE_PACKAGES:
        shutil.copytree(_driver.CODE_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.mark.parametrize("edited", [None, "dismi/model/losses.py", "stages/_driver.py", "dismi/model/objectives.py"])
def test_a_killed_run_resumes_only_with_the_code_that_made_its_checkpoint(
    tmp_path, pairs_file, monkeypatch, edited, run_training
):
    root = _code_copy(tmp_path)
    monkeypatch.setattr(_driver, "CODE_ROOT", root)  # the code hash is read from this copy
    _killed_run(run_training, monkeypatch, tmp_path, "train-shared", pairs_file)
    assert _checkpoint_iteration(tmp_path, "shared") == 20
    if edited:
        with open(root / edited, "a") as f:
            f.write("\n# an edit\n")
    second = run_training(tmp_path, "train-shared", pairs_file)
    assert second.exit_code == 0, second.output
    if edited:
        assert "starting fresh" in second.output and "resuming" not in second.output
        assert [s for s, _ in _tsv(tmp_path, "shared", "mi/global")] == [10, 20, 30, 40]
    else:
        assert "resuming from iteration 20" in second.output


def test_the_code_hash_covers_exactly_the_files_dvc_yaml_lists_for_the_stage():
    from test_dvc_yaml import STAGES

    from dismi.util import sources

    for stage in ("train_shared", "train_exclusive"):
        code = sources.closure(_driver.CODE_ROOT / "stages" / f"{stage}.py", _driver.CODE_ROOT, _driver.CODE_PACKAGES)
        assert {p.as_posix() for p in code} == {d for d in STAGES[stage]["deps"] if d.endswith(".py")}


def test_changed_params_start_fresh_despite_a_checkpoint(tmp_path, pairs_file, shared_run, monkeypatch, run_training):
    _killed_run(run_training, monkeypatch, tmp_path, "train-shared", pairs_file)
    result = run_training(tmp_path, "train-shared", pairs_file, gamma=0.5)
    assert result.exit_code == 0, result.output
    assert "starting fresh" in result.output
    # The killed run's checkpoint stays, for when its params come back.
    assert _checkpoint_iteration(tmp_path, "shared") == 20
    assert [s for s, _ in _tsv(tmp_path, "shared", "mi/global")] == [10, 20, 30, 40]
    assert torch.load(tmp_path / "shared.pt", weights_only=True)["params"]["gamma"] == 0.5
    assert not torch.equal(
        _weights(tmp_path / "shared.pt")["dense.weight"], _weights(shared_run / "shared.pt")["dense.weight"]
    )


def test_nan_loss_stops_with_one_line_naming_term_and_iteration_and_keeps_last_checkpoint(
    tmp_path, pairs_file, monkeypatch, run_training
):
    real, calls = losses.l1_distance, []

    def l1_going_nan(a, b, **kw):
        calls.append(1)
        return real(a, b, **kw) * (float("nan") if len(calls) >= 26 else 1.0)

    monkeypatch.setattr(losses, "l1_distance", l1_going_nan)
    result = run_training(tmp_path, "train-shared", pairs_file)
    assert isinstance(result.exception, DismiError)
    message = str(result.exception)
    assert "\n" not in message and message.startswith("loss/l1 became nan or inf at iteration 26")
    assert _checkpoint_iteration(tmp_path, "shared") == 20
    assert not (tmp_path / "shared.pt").exists()


# --------------------------------------------------------------------------- exclusive stage


def test_exclusive_stage_writes_model_and_metrics_and_its_mi_terms_improve(exclusive_run, shared_run):
    blob = torch.load(exclusive_run / "exclusive.pt", weights_only=True)
    assert blob["kind"] == "exclusive" and blob["config"] == {"width": 4, "out_dim": 8}
    assert blob["shared_sha256"] == file_sha256(shared_run / "shared.pt")
    assert blob["device"] == "cpu" and blob["torch_version"] == torch.__version__ and blob["device_name"]
    assert _checkpoints(exclusive_run, "exclusive") == []
    summary = yaml.safe_load((exclusive_run / "live_exclusive" / "metrics.json").read_text())
    # the profile's terms: the paper's adversary and the bottleneck, whose KL is also logged per coordinate of E
    assert set(summary["loss"]) == {"total", "adv_encoder", "adv_discriminator", "kl", "classifier"}
    assert len(summary["kl_dim"]) == 8
    assert set(summary["mi"]) == {"global", "local"}
    assert set(summary["acc_wide"]["exclusive"]) == set(FACTORS)
    mi = _mi(exclusive_run, "exclusive")
    assert mi[-1] > mi[0] + 0.3


def test_exclusive_stage_keeps_the_shared_encoder_frozen(exclusive_run, shared_run, tiny_pairs):
    # The frozen encoder's weights AND BatchNorm running statistics are what train-shared wrote.
    encoder, _ = modelfile.load_model(shared_run / "shared.pt")
    trainer = training.ExclusiveTrainer(
        shared=encoder,
        width=4,
        dim=8,
        alpha=0.5,
        beta=1.0,
        lambda_adv=0.01,
        lr=1e-2,
        seed=0,
        device=torch.device("cpu"),
    )
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    trainer.fit(
        tiny_pairs(), iters=3, batch_size=8, log_every=3, checkpoint_every=3, log=lambda *a: None, save=lambda s: None
    )
    assert not encoder.training
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_killed_exclusive_run_resumes_and_ends_as_if_never_stopped(
    tmp_path, pairs_file, shared_run, exclusive_run, monkeypatch, run_training
):
    _killed_run(run_training, monkeypatch, tmp_path, "train-exclusive", pairs_file, shared=shared_run / "shared.pt")
    shutil.rmtree(tmp_path / "live_exclusive")  # as DVC does before a rerun
    second = run_training(tmp_path, "train-exclusive", pairs_file, shared=shared_run / "shared.pt")
    assert second.exit_code == 0, second.output
    assert "resuming from iteration 20" in second.output
    _assert_same_weights(exclusive_run / "exclusive.pt", tmp_path / "exclusive.pt")
    assert _tsv(tmp_path, "exclusive", "mi/local") == _tsv(exclusive_run, "exclusive", "mi/local")


def test_exclusive_stage_refuses_an_exclusive_model_as_its_shared_encoder(
    tmp_path, pairs_file, exclusive_run, run_training
):
    result = run_training(tmp_path, "train-exclusive", pairs_file, shared=exclusive_run / "exclusive.pt")
    assert isinstance(result.exception, DismiError)
    assert "holds a 'exclusive' encoder" in str(result.exception)


def test_exclusive_stage_refuses_a_shared_model_trained_on_other_pairs(tmp_path, shared_run, tiny_pairs, run_training):
    other = tmp_path / "other.h5"
    write_pairs(other, tiny_pairs(seed=1))
    result = run_training(tmp_path, "train-exclusive", other, shared=shared_run / "shared.pt")
    assert isinstance(result.exception, DismiError) and "another pairs file" in str(result.exception)


def test_missing_shared_model_is_one_line(tmp_path, pairs_file, run_training):
    result = run_training(tmp_path, "train-exclusive", pairs_file, shared=tmp_path / "nope.pt")
    assert isinstance(result.exception, DismiError) and "not found" in str(result.exception)


def test_unreadable_model_file_and_missing_cuda_are_one_line_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(DismiError, match="is not a dismi model"):
        modelfile.load_model(tmp_path / "junk.pt")
    if not torch.cuda.is_available():
        with pytest.raises(DismiError, match="no CUDA device"):
            devices.claim("cuda", directory=tmp_path)
    with devices.claim("auto", directory=tmp_path) as claim:
        assert claim.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_the_same_weights_give_the_same_model_file_bytes(tmp_path):
    # DVC hashes model files: a save that embeds its temporary name would look like a new model.
    encoder = seeded(lambda: Encoder(width=2, out_dim=4), torch.Generator().manual_seed(0))
    for name in ("a.pt", "b.pt"):
        modelfile.save_model(tmp_path / name, encoder, "shared", {"width": 2}, "sha", iteration=3)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_a_model_file_records_the_device_it_was_trained_on_and_the_torch_version(tmp_path, monkeypatch):
    encoder = seeded(lambda: Encoder(width=2, out_dim=4), torch.Generator().manual_seed(0))
    modelfile.save_model(tmp_path / "cpu.pt", encoder, "shared", {}, "sha")
    _, meta = modelfile.load_model(tmp_path / "cpu.pt")
    assert meta["device"] == "cpu" and meta["torch_version"] == torch.__version__ and meta["device_name"]
    # On a GPU the name is the GPU's (faked here: no GPU needed).
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Fake 80GB")
    modelfile.save_model(tmp_path / "gpu.pt", encoder, "shared", {}, "sha", device="cuda:1")
    _, meta = modelfile.load_model(tmp_path / "gpu.pt")
    assert (meta["device"], meta["device_name"]) == ("cuda", "NVIDIA Fake 80GB")


def test_a_training_stage_is_never_silent_between_its_logs(tmp_path, pairs_file, monkeypatch, tiny, run_training):
    """Between two logs (250 iterations at the profile: about 50 s on a laptop CPU) the stage prints a
    heartbeat line with its speed and time left; made due every iteration here, so each iteration that
    is no log shows up as one."""
    monkeypatch.setattr(training, "HEARTBEAT_SECONDS", 0.0)
    result = run_training(tmp_path, "train-shared", pairs_file, log_every=tiny["iters_sh"])
    assert result.exit_code == 0, result.output
    beats = [
        ln for ln in result.output.splitlines() if ln.startswith("iteration ") and " left" in ln and "total" not in ln
    ]
    assert len(beats) >= tiny["iters_sh"] - 2, result.output
    assert "\r" not in result.output
