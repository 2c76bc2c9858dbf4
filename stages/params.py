"""params.yaml at the boundary: every knob declared once, and each stage's settings as a typed, validated config.

A knob is a flat params.yaml key, what a user types (`dvc exp run -S alpha_sh=0.3`). It is declared
once, as a field of the config of the stage that reads it (`alpha: float = knob("alpha_sh", 0.5, ...)`):
its key, default (the report's value; its type is the knob's type), allowed values with the check that
enforces them, the paper's symbol and one line of meaning. The field's name is the library's argument
name (SharedTrainer's `alpha`), so a stage passes a config on without renaming. Knobs that several stages
read live in a base class those stages' configs share. Adding a knob: its value in params.yaml and its
field here; tests/test_dvc_yaml.py then names the stage whose `params:` in dvc.yaml must list the key.

A knob that changes none of a stage's outputs (`checkpoint_every`: how often a resumable state is
written) is declared `tracked=False`: the stage reads it, but dvc.yaml does not list it, so changing it
reruns nothing and DVC's run-cache still restores the stage.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dismi.util.errors import DismiError


def _anything(v):
    return True


def _positive_int(v):
    return v >= 1


def _nonneg(v):
    return v >= 0


def _positive(v):
    return v > 0


def _at_least_2(v):
    return v >= 2


def _one_of(*values):
    return lambda v: v in values


@dataclass(frozen=True)
class Knob:
    key: str  # the flat params.yaml key users type
    default: Any  # the report's value; type(default) is the knob's type
    allowed: str  # what the error message says is allowed
    meaning: str  # one line
    symbol: str = ""  # the paper's symbol, where it has one
    check: Callable[[Any], bool] = _anything
    tracked: bool = True  # False: changes no output, so dvc.yaml does not list it

    @property
    def kind(self) -> type:  # bool, int, float or str
        return type(self.default)


def knob(
    key: str,
    default: Any,
    allowed: str,
    meaning: str,
    *,
    symbol: str = "",
    check: Callable[[Any], bool] = _anything,
    tracked: bool = True,
) -> Any:
    """A config field read from params.yaml's `key` (no dataclass default: every key must be in the file)."""
    return field(metadata={"knob": Knob(key, default, allowed, meaning, symbol, check, tracked)})


C = TypeVar("C", bound="Config")


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
    def untracked_keys(cls) -> list[str]:
        """The keys it also reads that change no output (dvc.yaml does not list them)."""
        return [k.key for k in cls.knobs().values() if not k.tracked]

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Read and validate this config's keys from a flat params file; DismiError on the first bad one."""
        values = load(path, cls.keys()) | load_untracked(path, cls.untracked_keys())
        return cls(**{name: values[k.key] for name, k in cls.knobs().items()})

    @classmethod
    def defaults(cls: type[C], **overrides: Any) -> C:
        """The report's settings, with `overrides` (field names)."""
        return cls(**({name: k.default for name, k in cls.knobs().items()} | overrides))

    def params(self) -> dict[str, Any]:
        """{params.yaml key: value} of the tracked knobs: what the stage's outputs depend on, as
        checkpoints and model files record it."""
        return {k.key: getattr(self, name) for name, k in self.knobs().items() if k.tracked}


# --------------------------------------------------------------------------- the stages' configs


@dataclass(frozen=True)
class Download(Config):
    """download: get Shapes3D, or render it offline."""

    dataset: str = knob(
        "dataset",
        "shapes3d",
        "'shapes3d' or 'synthetic'",
        "shapes3d: download the official file; synthetic: render it offline",
        check=_one_of("shapes3d", "synthetic"),
    )
    url: str = knob(
        "shapes3d_url",
        "https://storage.googleapis.com/3d-shapes/3dshapes.h5",
        "an http://, https:// or file:// URL",
        "where to download 3dshapes.h5 (file:// for a local copy)",
        check=lambda v: v.split("://")[0] in ("http", "https", "file"),
    )
    grid: str = knob(
        "synthetic_grid",
        "full",
        "'full' or 'small'",
        "synthetic only: full = all 480,000 images; small = a reduced grid for quick runs",
        check=_one_of("full", "small"),
    )


@dataclass(frozen=True)
class Pairs(Config):
    """pairs: dismi.data.pairs.pair_data's arguments."""

    n_pairs: int = knob(
        "n_pairs",
        24000,
        "an integer >= 1",
        "unique (x, y) pairs sharing scale, shape and orientation (report IV-A)",
        check=_positive_int,
    )
    test_fraction: float = knob(
        "test_fraction",
        0.1,
        "a number strictly between 0 and 1",
        "fraction of pairs held out; no image is in both splits",
        check=lambda v: 0 < v < 1,
    )
    seed: int = knob(
        "split_seed",
        0,
        "an integer >= 0",
        "which pairs exist and which are held out; fixed across training seeds",
        check=_nonneg,
    )


@dataclass(frozen=True)
class _Seeded(Config):
    """Knobs of every stage that runs networks: the training stages and evaluate."""

    seed: int = knob(
        "seed", 0, "an integer >= 0", "initialisation, batches, negatives and probes derive from it", check=_nonneg
    )
    # No GPU index: a run claims a free GPU when it starts (dismi.util.devices), so which GPU it got is not
    # a param and reruns nothing; CUDA_VISIBLE_DEVICES limits the GPUs it may claim.
    device: str = knob(
        "device",
        "auto",
        "'auto', 'cpu' or 'cuda'",
        "auto = a free GPU when CUDA is present, else the CPU; the GPU is claimed at run time",
        check=_one_of("auto", "cpu", "cuda"),
    )


# Trainer.fit's arguments; a training config's other fields (but `device`) are its trainer's.
FIT_ARGS = ("iters", "batch_size", "log_every", "checkpoint_every", "snapshot_every")


@dataclass(frozen=True)
class _Training(_Seeded):
    """Knobs both training stages read."""

    width: int = knob(
        "width",
        64,
        "an integer >= 1 (the paper's is 64)",
        "encoder base width; 64 gives the paper's 512x5x5 feature map C(X)",
        check=_positive_int,
    )
    batch_size: int = knob(
        "batch_size", 64, "an integer >= 2 (negatives come from the batch)", "pairs per iteration", check=_at_least_2
    )
    log_every: int = knob(
        "log_every",
        500,
        "an integer >= 1",
        "iterations between dvclive logs (losses, online accuracies on test batches)",
        check=_positive_int,
    )
    checkpoint_every: int = knob(
        "checkpoint_every",
        2000,
        "an integer >= 1",
        "iterations between resumable checkpoints (changes no output: not tracked by DVC)",
        check=_positive_int,
        tracked=False,
    )
    compile: bool = knob(
        "compile",
        False,
        "true or false",
        "torch.compile each training step whole (CUDA: with CUDA graphs); refused on CPUs, "
        "where it ran slower and gave a wrong gradient (docs/performance.md)",
    )
    snapshot_every: int = knob(
        "snapshot_every",
        0,
        "an integer >= 0 (0 = no snapshots)",
        "iterations between encoder snapshots for held-out learning curves (0 = none)",
        check=_nonneg,
    )
    # A measurement, not a fix: it changes no encoder, only adds classifiers and their logs.
    online_earlier: bool = knob(
        "online_earlier",
        False,
        "true or false",
        "also log acc_earlier/...: paper-width online classifiers trained and read as the "
        "earlier implementations did (softmax before cross-entropy, training batches)",
    )

    def trainer_args(self) -> dict[str, Any]:
        """The trainer's keyword arguments but `device` (resolved by the stage)."""
        return {k: v for k, v in asdict(self).items() if k not in FIT_ARGS and k != "device"}

    def fit_args(self) -> dict[str, Any]:
        """Trainer.fit's keyword arguments but the data and the callbacks."""
        return {k: getattr(self, k) for k in FIT_ARGS}


@dataclass(frozen=True)
class TrainShared(_Training):
    """train_shared (eq. 5-7): dismi.train.training.SharedTrainer's and Trainer.fit's arguments."""

    dim: int = knob("shared_dim", 64, "an integer >= 1", "size of S", symbol="dim S", check=_positive_int)
    lr: float = knob("lr_sh", 1e-4, "a number > 0", "Adam learning rate of the shared stage", check=_positive)
    iters: int = knob("iters_sh", 50000, "an integer >= 1", "iterations of the shared stage", check=_positive_int)
    alpha: float = knob(
        "alpha_sh", 0.5, "a number >= 0", "weight of the global MI terms (eq. 7)", symbol="α^sh", check=_nonneg
    )
    beta: float = knob(
        "beta_sh", 1.0, "a number >= 0", "weight of the local MI terms (eq. 7)", symbol="β^sh", check=_nonneg
    )
    gamma: float = knob("gamma", 0.1, "a number >= 0", "weight of L1(S_X, S_Y) (eq. 7)", symbol="γ", check=_nonneg)
    l1_reduce: str = knob(
        "l1_reduce",
        "mean",
        "'sum' (eq. 6's norm) or 'mean' (over coordinates too)",
        "mean: L1 averaged over S's coordinates (earlier implementations); sum: eq. 6's norm",
        check=_one_of("sum", "mean"),
    )
    switched: bool = knob(
        "switched", True, "true or false", "cross pairing (C(X), S_Y) of eq. 5; false = the paper's non-SSR ablation"
    )


@dataclass(frozen=True)
class TrainExclusive(_Training):
    """train_exclusive (eq. 8-10): dismi.train.training.ExclusiveTrainer's (but the frozen shared encoder) and
    Trainer.fit's arguments."""

    dim: int = knob("exclusive_dim", 64, "an integer >= 1", "size of E", symbol="dim E", check=_positive_int)
    lr: float = knob(
        "lr_ex", 1e-3, "a number > 0", "Adam learning rate of the exclusive stage (the paper's: 1e-4)", check=_positive
    )
    iters: int = knob("iters_ex", 30000, "an integer >= 1", "iterations of the exclusive stage", check=_positive_int)
    alpha: float = knob(
        "alpha_ex", 0.5, "a number >= 0", "weight of the global MI terms (eq. 8)", symbol="α^ex", check=_nonneg
    )
    beta: float = knob(
        "beta_ex", 1.0, "a number >= 0", "weight of the local MI terms (eq. 8)", symbol="β^ex", check=_nonneg
    )
    lambda_adv: float = knob(
        "lambda_adv",
        0.01,
        "a number >= 0",
        "weight of the adversarial term (eq. 8; paper Fig. 5 sweeps 0..0.05)",
        symbol="λ_adv",
        check=_nonneg,
    )
    beta_kl_ex: float = knob(
        "beta_kl_ex",
        0.0,
        "a number >= 0 (0 = off)",
        "weight of the bottleneck's KL: the MI terms see E through a unit-variance Gaussian channel, charged "
        "||E||^2 / 2 per image (0 = off, the paper; a departure)",
        symbol="β_KL",
        check=_nonneg,
    )
    negatives: str = knob(
        "negatives_ex",
        "batch",
        "'batch', 'partner' or 'conditional'",
        "whose representation the MI terms (eq. 8) score each feature map with as a negative: batch (another "
        "image of the batch, the paper), partner (the pair's other image; a departure) or conditional (the "
        "other images of a group of neighbours_ex + 1 pairs nearest by S, InfoNCE over the group; a departure)",
        check=_one_of("batch", "partner", "conditional"),
    )
    neighbours: int = knob(
        "neighbours_ex",
        7,
        "an integer >= 1 that with 1 divides batch_size",
        "negatives_ex conditional: nearest train pairs by S drawn with each anchor pair (2 (k + 1) - 1 negatives "
        "per image)",
        check=_positive_int,
    )

    def __post_init__(self):
        if self.negatives == "conditional" and self.batch_size % (self.neighbours + 1):
            raise DismiError(
                f"neighbours_ex is {self.neighbours}, so batch_size ({self.batch_size}) must be a multiple of "
                f"{self.neighbours + 1}: change either"
            )


@dataclass(frozen=True)
class Evaluate(_Seeded):
    """evaluate: dismi.eval.metrics.EvalSettings' fields."""

    probe_epochs: int = knob(
        "probe_epochs",
        30,
        "an integer >= 1",
        "epochs of each fresh probe classifier (report Table V) on train-split codes",
        check=_positive_int,
    )
    probe_lr: float = knob("probe_lr", 1e-3, "a number > 0", "Adam learning rate of the probes", check=_positive)
    probe_batch_size: int = knob("probe_batch_size", 256, "an integer >= 2", "probe minibatch size", check=_at_least_2)
    retrieval_k: int = knob(
        "retrieval_k", 10, "an integer >= 1", "neighbours per query (paper Fig. 4)", symbol="k", check=_positive_int
    )
    retrieval_queries: int = knob(
        "retrieval_queries", 1000, "an integer >= 1", "test images used as retrieval queries", check=_positive_int
    )
    critic_epochs: int = knob(
        "critic_epochs",
        10,
        "an integer >= 1",
        "epochs of each fresh critic of the S-E dependence (Table IV D, separable) on train-split codes",
        check=_positive_int,
    )
    dci_train_images: int = knob(
        "dci_train_images",
        10000,
        "an integer >= 2",
        "train-split images (a seeded draw) the DCI forests fit on (disentanglement_lib's num_train)",
        check=lambda v: v >= 2,
    )
    dci_trees: int = knob(
        "dci_trees",
        30,
        "an integer >= 1",
        "trees of each DCI random forest (one per factor and code block)",
        check=_positive_int,
    )
    mig_bins: int = knob(
        "mig_bins",
        20,
        "an integer >= 2",
        "histogram bins per code dimension for MIG (disentanglement_lib's default)",
        check=lambda v: v >= 2,
    )


CONFIGS: tuple[type[Config], ...] = (Download, Pairs, TrainShared, TrainExclusive, Evaluate)
# Every knob by its params.yaml key; a knob several stages read is the one object their configs share.
KNOBS: dict[str, Knob] = {k.key: k for config in CONFIGS for k in config.knobs().values()}


# --------------------------------------------------------------------------- reading params.yaml


def _coerce(key: str, value: Any, k: Knob) -> Any:
    # YAML reads 1e-4 as a string and 1 as an int; accept what a person means, nothing looser.
    if k.kind is bool:
        if isinstance(value, bool):
            return value
    elif k.kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif k.kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif k.kind is str:
        if isinstance(value, str):
            return value
    raise DismiError(
        f"param {key}={value!r} in params.yaml is not valid: expected {k.allowed} "
        f"(fix params.yaml or pass dvc exp run -S {key}=...)"
    )


def load(path: str | Path, keys: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Read and validate exactly `keys` from a flat params file; raise DismiError on the first bad one."""
    return _read(path, keys)


def load_untracked(path: str | Path, keys: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """As `load`, for knobs that change no output: a read dvc.yaml's `params:` need not list."""
    return _read(path, keys)


def _read(path: str | Path, keys: list[str] | tuple[str, ...]) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise DismiError(f"params file {path} not found: run from the repository root or pass --params") from None
    except yaml.YAMLError as e:
        raise DismiError(f"params file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise DismiError(f"params file {path} must be a flat mapping of key: value")
    # A key no knob declares is a typo (`lamda_adv: 0.1` beside `lambda_adv`) that would be read as nothing.
    for key in raw:
        if key not in KNOBS:
            near = difflib.get_close_matches(str(key), KNOBS, n=1)
            hint = f"did you mean {near[0]}?" if near else "`python -m stages knobs` lists them"
            raise DismiError(f"param {key} in {path} is no knob: {hint} (remove or rename it)")
    out = {}
    for key in keys:
        k = KNOBS[key]
        if key not in raw:
            raise DismiError(f"param {key} is missing from {path}: add it (allowed: {k.allowed})")
        value = _coerce(key, raw[key], k)
        if not k.check(value):
            raise DismiError(
                f"param {key}={raw[key]!r} is not allowed: expected {k.allowed} "
                f"(fix {path} or pass dvc exp run -S {key}=...)"
            )
        out[key] = value
    return out
