"""dismi: disentangled representations via mutual-information estimation (Sanchez et al., 2019).

The science lives here, free of CLI and file-layout knowledge, in layers whose imports only go down
(tests/test_layers.py): eval and train, then model and synthetic, then data, then util.

In a notebook:

    import dismi
    shared = dismi.load_encoder("models/shared.pt")        # S, in eval mode on the CPU
    codes = dismi.encode(shared, images)                   # uint8 (N, 64, 64, 3) -> float32 (N, 64)
"""

from __future__ import annotations

from dismi.util.errors import DismiError

__all__ = ["DismiError", "encode", "load_encoder"]


def load_encoder(path, device="cpu"):
    """A trained encoder (models/shared.pt or models/exclusive.pt), ready: in eval mode on `device`.
    Its forward takes images as `dismi.model.networks.to_input` makes them and returns (code, feature map);
    `dismi.encode` does that for uint8 images."""
    from dismi.train.modelfile import load_model  # torch loads only when an encoder is asked for

    return load_model(path, device)[0]


def encode(encoder, images, batch_size: int = 256, device="cpu"):
    """uint8 (N, 64, 64, 3) images -> float32 (N, code size) codes (dismi.model.networks.encode)."""
    from dismi.model.networks import encode as _encode

    return _encode(encoder, images, batch_size=batch_size, device=device)
