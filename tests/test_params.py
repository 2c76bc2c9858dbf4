"""params.yaml at the boundary: every knob validated, one clear line for a bad value."""

import dataclasses
import inspect
import typing
from pathlib import Path

import pytest
import yaml

from dismi.data.download import download
from dismi.data.pairs import pair_data
from dismi.eval.metrics import EvalSettings
from dismi.model.terms import TERMS
from dismi.synthetic.render import write_synthetic
from dismi.train import training
from dismi.util.errors import DismiError
from stages import params

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path, **overrides):
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p.update(overrides)
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(p))
    return f


def test_committed_params_are_valid_and_complete_and_are_the_cpu_profile():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(raw) == set(params.KNOBS), "params.yaml and KNOBS must list the same keys"
    committed = params.load(REPO / "params.yaml", list(params.KNOBS))
    # The committed params are the CPU profile (README, docs/model_card.md): offline, width 16,
    # eq. 6's summed norm, the paper's loss weights and batch; fewer iterations than the report.
    assert (committed["dataset"], committed["width"], committed["l1_reduce"]) == ("synthetic", 16, "sum")
    assert (committed["iters_sh"], committed["iters_ex"], committed["lr_sh"]) == (4000, 4000, 1e-3)
    # Its departures in E, named in README "Results" and docs/reproduction.md "Departures"; no bottleneck.
    assert (committed["negatives_ex"], committed["neighbours_ex"], committed["exclusive_dim"]) == ("conditional", 7, 16)
    assert committed["beta_kl_ex"] == 0.01
    # The paper's value wherever the paper gives one, but the departures, each marked so in params.yaml.
    lines = {line.split(":")[0]: line for line in (REPO / "params.yaml").read_text().splitlines()}
    departures = {key for key, k in params.KNOBS.items() if k.paper is not None and committed[key] != k.paper}
    assert departures <= {"dataset", "width", "exclusive_dim", "lr_sh", "lr_ex", "negatives_ex", "beta_kl_ex"}
    assert [key for key in departures if "departure" not in lines[key]] == []
    assert (committed["lr_ex"], committed["n_pairs"]) == (1e-3, 24000)  # the report's


def _protocol(name: str) -> dict:
    """params.yaml with the protocol's overrides, through the one checker (each config's `of`)."""
    values = yaml.safe_load((REPO / "params.yaml").read_text()) | params.protocol(name)
    for config in params.CONFIGS:
        config.of(values)
    return {key: params.KNOBS[key].coerce(value, name) for key, value in values.items()}


def test_the_report_protocol_reproduces_the_report():
    values = _protocol("report")
    # The report (Sec. IV-C, IV-D) on real Shapes3D: README's full-reproduction -S set.
    assert values["dataset"] == "shapes3d"
    assert values["lr_sh"] == 1e-4 and values["iters_sh"] == 50000
    assert values["lr_ex"] == 1e-3 and values["iters_ex"] == 30000
    assert (values["alpha_sh"], values["beta_sh"], values["gamma"]) == (0.5, 1.0, 0.1)
    assert values["lambda_adv"] == 0.01 and values["batch_size"] == 64
    assert values["width"] == 64 and values["shared_dim"] == values["exclusive_dim"] == 64
    assert values["n_pairs"] == 24000 and values["switched"] is True
    assert (values["l1_reduce"], values["negatives_ex"], values["beta_kl_ex"]) == ("mean", "batch", 0)


def test_the_paper_protocol_is_the_report_at_the_papers_values():
    values = _protocol("paper")
    assert values["lr_sh"] == values["lr_ex"] == 1e-4 and values["l1_reduce"] == "sum"
    assert (values["negatives_ex"], values["beta_kl_ex"], values["switched"]) == ("batch", 0, True)
    assert values["iters_ex"] == 30000  # the paper gives none: the report's
    with pytest.raises(DismiError, match="no protocol 'mine'"):
        params.protocol("mine")


def test_every_stage_param_in_dvc_yaml_is_a_knob():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    listed = {k for s in stages.values() for k in s.get("params", [])}
    assert listed <= set(params.KNOBS)
    # Every knob that changes an output is read by some stage, so `dvc exp run -S key=...` reruns something;
    # one that changes none (checkpoint_every) is listed nowhere, so changing it reruns nothing.
    untracked = {key for key, k in params.KNOBS.items() if not k.tracked}
    assert untracked == {"checkpoint_every"}
    assert set(params.KNOBS) - untracked == listed


def test_an_untracked_knob_is_still_read_validated_and_passed_on_but_not_recorded(tmp_path):
    cfg = params.TrainShared.load(_write(tmp_path, checkpoint_every=7))
    assert cfg.checkpoint_every == 7 and cfg.fit_args()["checkpoint_every"] == 7
    assert "checkpoint_every" not in cfg.params() and "checkpoint_every" not in params.TrainShared.keys()
    with pytest.raises(DismiError, match="param checkpoint_every=0 is not allowed"):
        params.TrainShared.load(_write(tmp_path, checkpoint_every=0))


def test_the_device_param_names_no_gpu_index():
    # Which GPU a run gets is claimed at run time (dismi.util.devices), so it reruns nothing.
    check = params.KNOBS["device"].check
    assert all(check(v) for v in ("auto", "cpu", "cuda")) and not check("cuda:1")


@pytest.mark.parametrize(
    "key, bad, needle",
    [
        ("lambda_adv", -1, "a number >= 0"),
        ("test_fraction", 1.5, "strictly between 0 and 1"),
        ("dataset", "mnist", "'shapes3d' or 'synthetic'"),
        ("width", 2.5, "an integer >= 1"),
        ("width", 0, "an integer >= 1"),
        ("switched", "yes", "true or false"),
        ("batch_size", 1, "an integer >= 2"),
        ("device", "tpu", "'auto'"),
        ("lr_sh", "fast", "a number > 0"),
        ("shapes3d_url", "ftp://x", "URL"),
    ],
)
def test_bad_value_names_key_value_and_allowed(tmp_path, key, bad, needle):
    f = _write(tmp_path, **{key: bad})
    with pytest.raises(DismiError) as e:
        params.load(f, [key])
    msg = str(e.value)
    assert "\n" not in msg and key in msg and repr(bad) in msg and needle in msg


def test_only_requested_keys_are_checked(tmp_path):
    f = _write(tmp_path, lambda_adv=-1)
    assert params.load(f, ["alpha_sh"]) == {"alpha_sh": 0.5}


def test_a_key_no_knob_declares_is_refused_with_the_closest_knob(tmp_path):
    """The mistake: a hand-edited typo beside the real key (`lamda_adv: 0.1`) silently read as nothing."""
    f = _write(tmp_path, lamda_adv=0.1)
    with pytest.raises(DismiError) as e:
        params.load(f, ["alpha_sh"])
    msg = str(e.value)
    assert "\n" not in msg and "lamda_adv" in msg and "did you mean lambda_adv?" in msg


def test_scientific_notation_strings_and_ints_become_floats(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("lr_sh: 1e-4\nalpha_sh: 1\n")
    assert params.load(f, ["lr_sh", "alpha_sh"]) == {"lr_sh": 1e-4, "alpha_sh": 1.0}


def test_missing_key_and_missing_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("seed: 0\n")
    with pytest.raises(DismiError, match="param gamma is missing"):
        params.load(f, ["gamma"])
    with pytest.raises(DismiError, match="not found"):
        params.load(tmp_path / "nope.yaml", ["seed"])


# --------------------------------------------------------------------------- the declaration


def test_each_knob_is_declared_once():
    # A knob that several stages read is one field of a base class their configs share, not a copy.
    declared: dict[str, set[int]] = {}
    for config in params.CONFIGS:
        for k in config.knobs().values():
            declared.setdefault(k.key, set()).add(id(k))
    assert {key: len(ids) for key, ids in declared.items()} == {key: 1 for key in params.KNOBS}


@pytest.mark.parametrize("config", params.CONFIGS, ids=lambda c: c.__name__)
def test_a_fields_type_is_its_knobs_type_and_its_default_is_allowed(config):
    hints = typing.get_type_hints(config)
    for name, k in config.knobs().items():
        assert hints[name] is k.kind and k.kind in (bool, int, float, str), f"{config.__name__}.{name}"
        assert k.paper is None or k.check(k.paper), f"{k.key}'s paper value {k.paper!r} is not {k.describe()}"
        assert k.meaning and k.describe() and "\n" not in k.meaning + k.describe() + k.symbol


def _arguments(fn, *left_out) -> set[str]:
    return set(inspect.signature(fn).parameters) - {"self", *left_out}


def test_config_fields_are_the_library_argument_names():
    # Every trainer and loop argument a user can set is a knob, under the library's own name.
    assert set(params.TrainShared.load(REPO / "params.yaml").trainer_args()) == _arguments(
        training.SharedTrainer, "device"
    )
    # `encoder` is no knob: a module that tests plant in place of Table I's (tests/test_independence.py);
    # `terms` gathers the independence terms' weights, each a knob under its TERMS key
    assert set(params.TrainExclusive.load(REPO / "params.yaml").trainer_args()) == _arguments(
        training.ExclusiveTrainer, "shared", "device", "encoder", "terms"
    ) | set(TERMS)
    for config in (params.TrainShared, params.TrainExclusive):
        assert set(config.load(REPO / "params.yaml").fit_args()) == _arguments(
            training.Trainer.fit, "data", "log", "save"
        )
    # `jobs` is no knob: the run's share of the cores, which the figures do not depend on
    assert set(params.Evaluate.knobs()) == {f.name for f in dataclasses.fields(EvalSettings)} - {"jobs"}
    assert set(params.Pairs.knobs()) <= _arguments(pair_data)
    assert "url" in _arguments(download) and "grid" in _arguments(write_synthetic)


def test_a_params_file_loads_as_its_values_through_of(tmp_path):
    values = yaml.safe_load((REPO / "params.yaml").read_text()) | params.protocol("report")
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(values))
    for config in params.CONFIGS:
        assert config.load(f) == config.of(values)
        assert config.load(f).params() == {key: params.load(f, [key])[key] for key in config.keys()}
    assert params.TrainShared.load(f).lr == 1e-4


def test_a_config_reads_its_flat_keys_into_the_librarys_names(tmp_path):
    f = _write(tmp_path, alpha_sh=0.3, alpha_ex=0.7, shared_dim=5, iters_sh=9)
    cfg = params.TrainShared.load(f)
    assert (cfg.alpha, cfg.dim, cfg.iters) == (0.3, 5, 9) and cfg.params()["alpha_sh"] == 0.3
    assert params.TrainExclusive.load(f).alpha == 0.7
    with pytest.raises(DismiError, match="param alpha_sh=-1 is not allowed"):
        params.TrainShared.load(_write(tmp_path, alpha_sh=-1))
