"""params.yaml at the boundary: every knob's type and allowed values, checked before work starts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from dismi.errors import DismiError


@dataclass(frozen=True)
class Knob:
    kind: type                               # bool, int, float or str
    check: Callable[[Any], bool] = lambda v: True
    allowed: str = ""                        # what the error message says is allowed


def _positive_int(v): return v >= 1
def _nonneg(v): return v >= 0
def _positive(v): return v > 0


KNOBS: dict[str, Knob] = {
    "dataset": Knob(str, lambda v: v in ("shapes3d", "synthetic"), "'shapes3d' or 'synthetic'"),
    "shapes3d_url": Knob(str, lambda v: v.split("://")[0] in ("http", "https", "file"),
                         "an http://, https:// or file:// URL"),
    "synthetic_grid": Knob(str, lambda v: v in ("full", "small"), "'full' or 'small'"),
    "n_pairs": Knob(int, _positive_int, "an integer >= 1"),
    "test_fraction": Knob(float, lambda v: 0 < v < 1, "a number strictly between 0 and 1"),
    "split_seed": Knob(int, _nonneg, "an integer >= 0"),
    "seed": Knob(int, _nonneg, "an integer >= 0"),
    "width": Knob(int, _positive_int, "an integer >= 1 (the paper's is 64)"),
    "shared_dim": Knob(int, _positive_int, "an integer >= 1"),
    "exclusive_dim": Knob(int, _positive_int, "an integer >= 1"),
    "batch_size": Knob(int, lambda v: v >= 2, "an integer >= 2 (negatives come from the batch)"),
    "lr_sh": Knob(float, _positive, "a number > 0"),
    "iters_sh": Knob(int, _positive_int, "an integer >= 1"),
    "alpha_sh": Knob(float, _nonneg, "a number >= 0"),
    "beta_sh": Knob(float, _nonneg, "a number >= 0"),
    "gamma": Knob(float, _nonneg, "a number >= 0"),
    "l1_reduce": Knob(str, lambda v: v in ("sum", "mean"), "'sum' (eq. 6's norm) or 'mean' (over coordinates too)"),
    "switched": Knob(bool, allowed="true or false"),
    "lr_ex": Knob(float, _positive, "a number > 0"),
    "iters_ex": Knob(int, _positive_int, "an integer >= 1"),
    "alpha_ex": Knob(float, _nonneg, "a number >= 0"),
    "beta_ex": Knob(float, _nonneg, "a number >= 0"),
    "lambda_adv": Knob(float, _nonneg, "a number >= 0"),
    "log_every": Knob(int, _positive_int, "an integer >= 1"),
    "checkpoint_every": Knob(int, _positive_int, "an integer >= 1"),
    "snapshot_every": Knob(int, _nonneg, "an integer >= 0 (0 = no snapshots)"),
    "device": Knob(str, lambda v: v in ("auto", "cpu", "cuda") or v.startswith("cuda:"),
                   "'auto', 'cpu', 'cuda' or 'cuda:N'"),
    "probe_epochs": Knob(int, _positive_int, "an integer >= 1"),
    "probe_lr": Knob(float, _positive, "a number > 0"),
    "probe_batch_size": Knob(int, lambda v: v >= 2, "an integer >= 2"),
    "retrieval_k": Knob(int, _positive_int, "an integer >= 1"),
    "retrieval_queries": Knob(int, _positive_int, "an integer >= 1"),
}


def _coerce(key: str, value: Any, knob: Knob) -> Any:
    # YAML reads 1e-4 as a string and 1 as an int; accept what a person means, nothing looser.
    if knob.kind is bool:
        if isinstance(value, bool):
            return value
    elif knob.kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif knob.kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif knob.kind is str:
        if isinstance(value, str):
            return value
    raise DismiError(
        f"param {key}={value!r} in params.yaml is not valid: expected {knob.allowed} "
        f"(fix params.yaml or pass dvc exp run -S {key}=...)"
    )


def load(path: str | Path, keys: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Read and validate exactly `keys` from a flat params file; raise DismiError on the first bad one."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise DismiError(f"params file {path} not found: run from the repository root or pass --params") from None
    except yaml.YAMLError as e:
        raise DismiError(f"params file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise DismiError(f"params file {path} must be a flat mapping of key: value")
    out = {}
    for key in keys:
        knob = KNOBS[key]
        if key not in raw:
            raise DismiError(f"param {key} is missing from {path}: add it (allowed: {knob.allowed})")
        value = _coerce(key, raw[key], knob)
        if not knob.check(value):
            raise DismiError(
                f"param {key}={raw[key]!r} is not allowed: expected {knob.allowed} "
                f"(fix {path} or pass dvc exp run -S {key}=...)"
            )
        out[key] = value
    return out
