"""params.yaml at the boundary: every knob declared once and checked once, each stage's settings a config.

params.yaml is the one place values live. A knob (a flat key: `dvc exp run -S alpha_sh=0.3`) is declared once,
as a field of the config of the stage that reads it, under the library argument's name:
`alpha: float = knob("alpha_sh", ">= 0", 0.5, "...")` gives its key, type, allowed values or range, the paper's
value (None where the paper gives none) and its meaning; `tracked=False`: it changes no output, so dvc.yaml
does not list it. Named parameter sets override params.yaml (`protocol`): `report` (docs/protocols/report.yaml)
and `paper` (the report's, at the paper's value wherever it gives one).
"""

from __future__ import annotations

import contextlib
import difflib
import operator
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from dismi.util.errors import DismiError

PROTOCOLS = {"report": Path(__file__).resolve().parents[1] / "docs" / "protocols" / "report.yaml"}
_COMPARE = {">=": operator.ge, ">": operator.gt}  # the operators of a range spec such as ">= 1"
_SPECS = {  # the other `allowed` specs: what an error message says, and the test
    "": ("true or false", lambda v: True),
    "url": ("an http://, https:// or file:// URL", lambda v: v.split("://")[0] in ("http", "https", "file")),
    "(0, 1)": ("a number strictly between 0 and 1", lambda v: 0 < v < 1),
}


@dataclass
class Knob:
    key: str  # the flat params.yaml key users type
    allowed: str | tuple[str, ...]  # a tuple of choices, a range (">= 1", "> 0", "(0, 1)"), "url", or "" (bool)
    paper: Any  # the paper's value; None where the paper gives none
    meaning: str  # one line
    symbol: str = ""  # the paper's symbol, where it has one
    tracked: bool = True  # False: changes no output, so dvc.yaml does not list it
    kind: type = object  # bool, int, float or str: its config field's type (set below CONFIGS)

    def describe(self) -> str:
        """What the error message says is allowed."""
        if isinstance(self.allowed, tuple):
            *rest, last = [f"'{v}'" for v in self.allowed]
            return f"{', '.join(rest)} or {last}" if rest else last
        if self.allowed in _SPECS:
            return _SPECS[self.allowed][0]
        return f"{'an integer' if self.kind is int else 'a number'} {self.allowed}"

    def check(self, value: Any) -> bool:
        if isinstance(self.allowed, tuple):
            return value in self.allowed
        if self.allowed in _SPECS:
            return _SPECS[self.allowed][1](value)
        op, bound = self.allowed.split()
        return _COMPARE[op](value, float(bound))

    def coerce(self, value: Any, where: str) -> Any:
        """The value as the knob's type, checked; DismiError naming key, value, allowed and the fix."""
        raw, fix = value, f"(fix {where} or pass dvc exp run -S {self.key}=...)"
        if self.kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            with contextlib.suppress(ValueError):  # YAML reads 1e-4 as a string and 1 as an int
                value = float(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise DismiError(
                f"param {self.key}={raw!r} in {Path(where).name} is not valid: expected {self.describe()} {fix}"
            )
        if not self.check(value):
            raise DismiError(f"param {self.key}={raw!r} is not allowed: expected {self.describe()} {fix}")
        return value


def knob(key: str, allowed, paper, meaning: str, *, symbol: str = "", tracked: bool = True) -> Any:
    """A config field read from params.yaml's `key` (no default: every key must be in the file)."""
    return field(metadata={"knob": Knob(key, allowed, paper, meaning, symbol, tracked)})


@dataclass(frozen=True)
class Config:
    """A stage's settings: every field a knob, named as the library argument it is passed as."""

    @classmethod
    def knobs(cls) -> dict[str, Knob]:
        """Field name -> its knob, in field order."""
        return {f.name: f.metadata["knob"] for f in fields(cls)}

    @classmethod
    def keys(cls) -> list[str]:
        """The params.yaml keys this config reads that change its stage's outputs: what the stage's
        `params:` in dvc.yaml must list."""
        return [k.key for k in cls.knobs().values() if k.tracked]

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read and validate this config's keys from a flat params file; DismiError on the first bad one."""
        return cls._of_checked(load(path, [k.key for k in cls.knobs().values()]))

    @classmethod
    def of(cls, values: dict[str, Any], where: str = "params.yaml") -> Config:
        """The config from {params.yaml key: value}, each value checked (a protocol, a test's settings)."""
        return cls._of_checked(_checked(values, [k.key for k in cls.knobs().values()], where))

    @classmethod
    def _of_checked(cls, checked: dict[str, Any]) -> Config:
        return cls(**{name: checked[k.key] for name, k in cls.knobs().items()})

    def params(self) -> dict[str, Any]:
        """{params.yaml key: value} of the tracked knobs: what the stage's outputs depend on, as
        checkpoints and model files record it."""
        return {k.key: getattr(self, name) for name, k in self.knobs().items() if k.tracked}


# --------------------------------------------------------------------------- the stages' configs


@dataclass(frozen=True)
class Download(Config):
    """download: get Shapes3D, or render it offline."""

    dataset: str = knob(
        "dataset", ("shapes3d", "synthetic"), "shapes3d", "shapes3d: the official file; synthetic: render it offline"
    )
    url: str = knob("shapes3d_url", "url", None, "where to download 3dshapes.h5 (file:// for a local copy)")
    grid: str = knob("synthetic_grid", ("full", "small"), None, "synthetic: all 480,000 images, or a small grid")


@dataclass(frozen=True)
class Pairs(Config):
    """pairs: dismi.data.pairs.pair_data's arguments."""

    n_pairs: int = knob("n_pairs", ">= 1", None, "unique (x, y) pairs sharing scale, shape and orientation")
    test_fraction: float = knob("test_fraction", "(0, 1)", None, "fraction of pairs held out; no image in both splits")
    seed: int = knob("split_seed", ">= 0", None, "which pairs exist and which are held out; fixed across seeds")


@dataclass(frozen=True)
class _Seeded(Config):
    """Knobs of every stage that runs networks: the training stages and evaluate."""

    seed: int = knob("seed", ">= 0", None, "initialisation, batches, negatives and probes derive from it")
    # No GPU index: a run claims a free GPU when it starts (dismi.util.devices), so which GPU it got is not
    # a param and reruns nothing; CUDA_VISIBLE_DEVICES limits the GPUs it may claim.
    device: str = knob("device", ("auto", "cpu", "cuda"), None, "auto = a free GPU when CUDA is present, else the CPU")


# Trainer.fit's arguments; a training config's other fields (but `device`) are its trainer's.
FIT_ARGS = ("iters", "batch_size", "log_every", "checkpoint_every", "snapshot_every")


@dataclass(frozen=True)
class _Training(_Seeded):
    """Knobs both training stages read."""

    width: int = knob("width", ">= 1", 64, "encoder base width; 64 gives the paper's 512x5x5 feature map C(X)")
    batch_size: int = knob("batch_size", ">= 2", 64, "pairs per iteration (negatives come from the batch)")
    log_every: int = knob("log_every", ">= 1", None, "iterations between dvclive logs")
    checkpoint_every: int = knob("checkpoint_every", ">= 1", None, "iterations between checkpoints", tracked=False)
    compile: bool = knob("compile", "", None, "torch.compile each training step (with CUDA graphs); refused on CPUs")
    snapshot_every: int = knob("snapshot_every", ">= 0", None, "iterations between encoder snapshots (0 = none)")
    # A measurement, not a fix: it changes no encoder, only adds classifiers and their logs.
    online_earlier: bool = knob("online_earlier", "", None, "also log the earlier implementations' online accuracies")

    def trainer_args(self) -> dict[str, Any]:
        """The trainer's keyword arguments but `device` (resolved by the stage)."""
        return {k: v for k, v in asdict(self).items() if k not in FIT_ARGS and k != "device"}

    def fit_args(self) -> dict[str, Any]:
        """Trainer.fit's keyword arguments but the data and the callbacks."""
        return {k: getattr(self, k) for k in FIT_ARGS}


@dataclass(frozen=True)
class TrainShared(_Training):
    """train_shared (eq. 5-7): dismi.train.training.SharedTrainer's and Trainer.fit's arguments."""

    dim: int = knob("shared_dim", ">= 1", 64, "size of S", symbol="dim S")
    lr: float = knob("lr_sh", "> 0", 1e-4, "Adam learning rate of the shared stage")
    iters: int = knob("iters_sh", ">= 1", None, "iterations of the shared stage")
    alpha: float = knob("alpha_sh", ">= 0", 0.5, "weight of the global MI terms (eq. 7)", symbol="α^sh")
    beta: float = knob("beta_sh", ">= 0", 1.0, "weight of the local MI terms (eq. 7)", symbol="β^sh")
    gamma: float = knob("gamma", ">= 0", 0.1, "weight of L1(S_X, S_Y) (eq. 7)", symbol="γ")
    l1_reduce: str = knob("l1_reduce", ("sum", "mean"), "sum", "sum: eq. 6's norm; mean: averaged over coordinates")
    switched: bool = knob("switched", "", True, "cross pairing (C(X), S_Y) of eq. 5; false = the non-SSR ablation")


@dataclass(frozen=True)
class TrainExclusive(_Training):
    """train_exclusive (eq. 8-10): dismi.train.training.ExclusiveTrainer's (but the frozen shared encoder) and
    Trainer.fit's arguments."""

    dim: int = knob("exclusive_dim", ">= 1", 64, "size of E", symbol="dim E")
    lr: float = knob("lr_ex", "> 0", 1e-4, "Adam learning rate of the exclusive stage")
    iters: int = knob("iters_ex", ">= 1", None, "iterations of the exclusive stage")
    alpha: float = knob("alpha_ex", ">= 0", 0.5, "weight of the global MI terms (eq. 8)", symbol="α^ex")
    beta: float = knob("beta_ex", ">= 0", 1.0, "weight of the local MI terms (eq. 8)", symbol="β^ex")
    lambda_adv: float = knob("lambda_adv", ">= 0", 0.01, "weight of the adversary (eq. 8; Fig. 5)", symbol="λ_adv")
    beta_kl_ex: float = knob("beta_kl_ex", ">= 0", 0.0, "bottleneck: E + N(0, I) to the MI terms, ||E||^2/2 charged")
    lambda_slice: float = knob("lambda_slice", ">= 0", 0.0, "weight of the sliced MI of S and E at learnt slices")
    negatives: str = knob(
        "negatives_ex", ("batch", "partner", "conditional", "kernel"), "batch", "whose codes the MI terms contrast"
    )
    neighbours: int = knob("neighbours_ex", ">= 1", None, "conditional, kernel: pairs drawn with each anchor pair")

    def __post_init__(self):
        if self.negatives in ("conditional", "kernel") and self.batch_size % (self.neighbours + 1):
            n = self.neighbours + 1
            raise DismiError(
                f"neighbours_ex is {n - 1}, so batch_size ({self.batch_size}) must be a multiple of {n}: change either"
            )


@dataclass(frozen=True)
class Evaluate(_Seeded):
    """evaluate: dismi.eval.metrics.EvalSettings' fields."""

    probe_epochs: int = knob("probe_epochs", ">= 1", None, "epochs of each fresh probe (report Table V)")
    probe_lr: float = knob("probe_lr", "> 0", None, "Adam learning rate of the probes")
    probe_batch_size: int = knob("probe_batch_size", ">= 2", None, "probe minibatch size")
    retrieval_k: int = knob("retrieval_k", ">= 1", 10, "neighbours per query (paper Fig. 4)", symbol="k")
    retrieval_queries: int = knob("retrieval_queries", ">= 1", None, "test images used as retrieval queries")
    critic_epochs: int = knob("critic_epochs", ">= 1", None, "epochs of each fresh critic of the S-E dependence")
    dci_train_images: int = knob("dci_train_images", ">= 2", None, "train-split images the DCI forests fit on")
    dci_trees: int = knob("dci_trees", ">= 1", None, "trees of each DCI forest (one per factor and code block)")
    mig_bins: int = knob("mig_bins", ">= 2", None, "histogram bins per code dimension for MIG")


CONFIGS: tuple[type[Config], ...] = (Download, Pairs, TrainShared, TrainExclusive, Evaluate)
KNOBS: dict[str, Knob] = {k.key: k for config in CONFIGS for k in config.knobs().values()}
for _config in CONFIGS:
    for _name, _hint in typing.get_type_hints(_config).items():
        _config.knobs()[_name].kind = _hint


# --------------------------------------------------------------------------- reading params files


def read(path: str | Path) -> dict[str, Any]:
    """A flat params file as {key: raw value}; DismiError when missing, not YAML or not flat."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise DismiError(f"params file {path} not found: run from the repository root or pass --params") from None
    except yaml.YAMLError as e:
        raise DismiError(f"params file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise DismiError(f"params file {path} must be a flat mapping of key: value")
    return raw


def _checked(values: dict[str, Any], keys: list[str], where: str) -> dict[str, Any]:
    """Exactly `keys` of `values`, each checked; DismiError on a key that is no knob (a typo, `lamda_adv`,
    would be read as nothing), on a missing key or on the first bad value."""
    for key in values:
        if key not in KNOBS:
            near = difflib.get_close_matches(str(key), KNOBS, n=1)
            hint = f"did you mean {near[0]}?" if near else "`python -m stages knobs` lists them"
            raise DismiError(f"param {key} in {where} is no knob: {hint} (remove or rename it)")
    for key in keys:
        if key not in values:
            raise DismiError(f"param {key} is missing from {where}: add it (allowed: {KNOBS[key].describe()})")
    return {key: KNOBS[key].coerce(values[key], where) for key in keys}


def load(path: str | Path, keys: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Exactly `keys` of a flat params file, checked; DismiError on an unknown key or the first bad value."""
    return _checked(read(path), list(keys), str(path))


def protocol(name: str) -> dict[str, Any]:
    """The overrides of params.yaml that make the protocol `name` ('report' or 'paper')."""
    if name not in (*PROTOCOLS, "paper"):
        raise DismiError(f"no protocol {name!r}: choose report or paper")
    report = read(PROTOCOLS["report"])
    return report if name == "report" else report | {key: k.paper for key, k in KNOBS.items() if k.paper is not None}
