"""Model files and checkpoints: what a training stage writes and what later stages and resumed runs read.

A model file holds an encoder's final weights, its snapshots (for learning curves), the params and the
pairs file it was trained on, and where; a checkpoint holds a trainer's whole state beside the fingerprint
(params, code, data) that alone may resume it. Both are written atomically and load with weights_only=True.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dismi.data.results import check_representation
from dismi.model.networks import Encoder
from dismi.util import devices
from dismi.util.errors import DismiError
from dismi.util.files import atomic_write


def _atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save through dismi.util.files.atomic_write: a crash never leaves a complete-looking file.

    Saved through a file object: given a path, torch names the archive after the (temporary, per
    process) file, so the same weights would hash differently on every save and DVC would see a
    changed model.
    """

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    atomic_write(path, write)


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's weights on the CPU. A copy even there: `.cpu()` and `.contiguous()` return the
    tensor itself when it already is, and a snapshot sharing storage with the live weights would follow the
    optimizer's in-place updates to the end of the run."""
    return {
        k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        for k, v in module.state_dict().items()
    }


def save_model(
    path: str | Path,
    encoder: Encoder,
    kind: str,
    params: dict,
    data_sha256: str,
    *,
    iteration: int | None = None,
    snapshots: dict[int, dict] | None = None,
    device: str | torch.device | None = None,
    **extra: Any,
) -> None:
    """Final weights of one encoder with what they were trained with; loadable with weights_only=True.

    `snapshots` (iteration -> weights) are earlier states of the same encoder, for learning curves.
    The file records the device it was trained on (`device`, default: where the encoder's weights
    are), its model name (`device_name`) and the torch version (`torch_version`).
    """
    check_representation(kind)
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    _atomic_save(
        {
            "kind": kind,
            "config": {"width": encoder.width, "out_dim": encoder.out_dim},
            "state_dict": cpu_state(encoder),
            "params": dict(params),
            "data_sha256": data_sha256,
            "iteration": iteration,
            "snapshots": {str(i): w for i, w in (snapshots or {}).items()},
            "device": device.type,
            "device_name": devices.describe(device),
            "torch_version": str(torch.__version__),
            **extra,
        },
        path,
    )


def _read_model(path: str | Path) -> dict:
    """A model file's contents, its final weights checked to load into its encoder; DismiError otherwise."""
    path = Path(path)
    if not path.exists():
        raise DismiError(f"model file {path} not found: run its training stage first (dvc repro)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        Encoder(**blob["config"]).load_state_dict(blob["state_dict"])
    except Exception as e:  # any unreadable or foreign file gets the same one-line answer
        raise DismiError(
            f"model file {path} is not a dismi model ({type(e).__name__}): delete it and rerun its training stage"
        ) from None
    return blob


def _encoder(config: dict, weights: dict, device: str | torch.device) -> Encoder:
    encoder = Encoder(**config)
    encoder.load_state_dict(weights)
    return encoder.to(device).eval()


def _meta(blob: dict) -> dict:
    return {k: v for k, v in blob.items() if k not in ("state_dict", "snapshots")}


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Encoder, dict]:
    """-> (encoder in eval mode on `device`, the file's other fields)."""
    blob = _read_model(path)
    return _encoder(blob["config"], blob["state_dict"], device), _meta(blob)


def load_snapshots(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[list[tuple[int | None, Encoder]], dict]:
    """([(iteration, encoder in eval mode)] for each snapshot in a model file and its final weights, in
    training order; the final entry's iteration is None when the file does not record it), the file's
    other fields). One read of the file."""
    blob = _read_model(path)
    snapshots = sorted((int(i), w) for i, w in (blob.get("snapshots") or {}).items())
    encoders = [(it, _encoder(blob["config"], w, device)) for it, w in snapshots]
    return encoders + [(blob.get("iteration"), _encoder(blob["config"], blob["state_dict"], device))], _meta(blob)


def save_checkpoint(path: str | Path, state: dict, fingerprint: dict) -> None:
    _atomic_save({"fingerprint": fingerprint, **state}, path)


def load_checkpoint(path: str | Path, fingerprint: dict) -> dict | None:
    """The checkpoint's state when it exists, is readable and was made with `fingerprint`; else None."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # missing, truncated or foreign: the run starts fresh and overwrites it
        return None
    return state if isinstance(state, dict) and state.get("fingerprint") == fingerprint else None


def check_model(meta: dict, path: str | Path, kind: str, data_sha256: str) -> None:
    """The one check of a model file against its use: an encoder of `kind`, trained on this pairs file."""
    if meta.get("kind") != kind:
        raise DismiError(
            f"model {path} holds a {meta.get('kind')!r} encoder, not {kind!r}: pass the "
            f"train-{kind} stage's model (models/{kind}.pt)"
        )
    if meta.get("data_sha256") != data_sha256:
        raise DismiError(f"model {path} was trained on another pairs file: rerun train-{kind} (dvc repro)")
