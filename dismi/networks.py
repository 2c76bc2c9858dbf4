"""The networks of the report's Tables I-V: encoder, statistics networks, discriminator, classifier.

Sizes the report leaves out follow the earlier implementations at the paper's base width 64
(docs/facts.md, "Networks") and scale with `width`, so a reduced `width` shrinks every network, not
just the encoder.
"""
from __future__ import annotations

import math
from typing import Callable, TypeVar

import numpy as np
import torch
from torch import nn

from dismi.errors import DismiError

MAP_SIZE = 5            # spatial size of C(X): 64 -> 61 -> 29 -> 13 -> 5 with no padding
CLASSIFIER_HIDDEN = 256  # the "wide" probe: Table V's "as many neurons as classes" (4 for shape) is a bottleneck
# Two probe classifiers, reported side by side: "paper" is Table V as written (hidden layers as wide as
# the number of classes), what the paper's and the report's accuracies were read with; "wide" is 2x256,
# which reads out weaker dependences and is the stricter judge of disentanglement.
PROBES = ("paper", "wide")
DISCRIMINATOR_HIDDEN = (1000, 200)

M = TypeVar("M", bound=nn.Module)


def seeded(factory: Callable[[], M], generator: torch.Generator) -> M:
    """Build `factory()` on the CPU with torch's default initialisation drawn from `generator`.

    The module is first built on the meta device (shapes only), so the global RNG is neither
    read nor advanced.
    """
    with torch.device("meta"):
        module = factory()
    module.to_empty(device="cpu")
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.weight[0].numel())  # 1 / sqrt(fan_in)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            m.reset_parameters()  # ones, zeros, fresh running statistics: nothing random
        elif any(True for _ in m.parameters(recurse=False)):
            raise TypeError(f"seeded() does not know how to initialise {type(m).__name__}")
    return module


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 64, 64, 3) -> float (B, 3, 64, 64) in [-1, 1], in channels_last memory order.

    Scaling happens here, inside the model step, so storage and transfers stay uint8; an earlier
    implementation fed raw 0..255 floats. channels_last keeps the NHWC storage order, which both
    oneDNN (CPU) and cuDNN prefer: on the CPU the encoder's convolutions run 3-10x faster in it.
    """
    return images.permute(0, 3, 1, 2).float().mul_(1.0 / 127.5).sub_(1.0).contiguous(
        memory_format=torch.channels_last)


def _down(c_in: int, c_out: int) -> nn.Sequential:
    # Bias-free: the BatchNorm shift right after it makes a conv bias redundant. In-place activations
    # here and after the first conv: neither the conv's nor BatchNorm's backward reads its output, and
    # one pass less over the largest maps is 3% of a width-16 step (docs/performance.md).
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(0.2, inplace=True))


class Encoder(nn.Module):
    """Table I: conv 4x4/1 (w) -> 4x4/2 (2w) -> 4x4/2 (4w) -> 4x4/2 (8w), dense to `out_dim`."""

    def __init__(self, width: int = 64, out_dim: int = 64):
        super().__init__()
        self.width, self.out_dim = width, out_dim
        self.convs = nn.Sequential(
            nn.Conv2d(3, width, 4, 1), nn.LeakyReLU(0.2, inplace=True),
            _down(width, 2 * width), _down(2 * width, 4 * width), _down(4 * width, 8 * width),
        )
        self.dense = nn.Linear(8 * width * MAP_SIZE * MAP_SIZE, out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.convs(x)  # (B, 8w, 5, 5): C(X), what the statistics networks see
        return self.dense(fmap.flatten(1)), fmap  # (B, out_dim), (B, 8w, 5, 5)


class GlobalStatistics(nn.Module):
    """Table II: T(C, z) = dense 8w, 8w, 1 on [two 3x3 convs of C (5 -> 3 -> 1), z].

    Scoring is split in `embed` (the map part) and `score` so the joint and the shuffled pairs
    share one pass over the feature map.
    """

    def __init__(self, map_channels: int, rep_dim: int, width: int = 64):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(map_channels, 2 * width, 3), nn.ReLU(),
                                   nn.Conv2d(2 * width, width, 3))
        hidden = 8 * width
        self.mlp = nn.Sequential(nn.Linear(width + rep_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def embed(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.convs(fmap).flatten(1)  # (B, w)

    def score(self, h: torch.Tensor, rep: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([h, rep], dim=1)).squeeze(1)  # (B,)

    def forward(self, fmap: torch.Tensor, rep: torch.Tensor) -> torch.Tensor:
        return self.score(self.embed(fmap), rep)


class LocalStatistics(nn.Module):
    """Table III: 1x1 convs 8w, 8w, 1 on [C, z tiled over the 5x5 map] -> one score per location.

    A 1x1 conv is a dense layer applied at each location, so that is how it is written, on
    (B, 25, C). The first layer over the concatenation [C, tile(z)] is the sum of a map part and
    a representation part (`map_in`, `rep_in`): the same linear map, without building the tiled
    tensor, and with the map part computed once for the joint and the shuffled pairs.
    """

    def __init__(self, map_channels: int, rep_dim: int, width: int = 64):
        super().__init__()
        hidden = 8 * width
        self.map_in = nn.Linear(map_channels, hidden)
        self.rep_in = nn.Linear(rep_dim, hidden, bias=False)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def embed(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.map_in(fmap.flatten(2).transpose(1, 2))  # (B, 25, hidden)

    def score(self, h: torch.Tensor, rep: torch.Tensor) -> torch.Tensor:
        return self.head(h + self.rep_in(rep).unsqueeze(1)).squeeze(2)  # (B, 25)

    def forward(self, fmap: torch.Tensor, rep: torch.Tensor) -> torch.Tensor:
        return self.score(self.embed(fmap), rep)


class Discriminator(nn.Module):
    """Table IV: D(S, E) -> logit, dense 1000, 200, 1; high = "shuffled" (product of marginals)."""

    def __init__(self, shared_dim: int, exclusive_dim: int):
        super().__init__()
        h1, h2 = DISCRIMINATOR_HIDDEN
        self.mlp = nn.Sequential(nn.Linear(shared_dim + exclusive_dim, h1), nn.ReLU(),
                                 nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 1))

    def forward(self, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([s, e], dim=1)).squeeze(1)  # (B,) logits


def probe_hidden(probe: str, n_classes: int) -> int:
    """Hidden width of a probe classifier of kind `probe` ("paper" or "wide") for n_classes classes."""
    if probe == "paper":
        return n_classes
    if probe == "wide":
        return CLASSIFIER_HIDDEN
    raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")


class Classifier(nn.Module):
    """Table V: two hidden dense layers with BatchNorm and ReLU; returns LOGITS.

    Softmax belongs at prediction time only: cross-entropy applies log-softmax itself, and an
    earlier implementation's softmax-then-cross-entropy understated what the codes hold.
    Hidden width `CLASSIFIER_HIDDEN` rather than the report's "as many neurons as classes".
    """

    def __init__(self, in_dim: int, n_classes: int, hidden: int = CLASSIFIER_HIDDEN):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z)  # (B, n_classes) logits


@torch.no_grad()
def encode(encoder: Encoder, images: np.ndarray, batch_size: int = 512, device: str | torch.device = "cpu"
           ) -> np.ndarray:
    """uint8 (N, 64, 64, 3) images -> float32 (N, out_dim) codes, in eval mode.

    Moves `encoder` to `device`; its train/eval mode is restored afterwards.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape[1:] != (64, 64, 3):
        got = f"{images.shape} {images.dtype}" if isinstance(images, np.ndarray) else type(images).__name__
        raise DismiError(f"encode needs a uint8 array of shape (N, 64, 64, 3), got {got}")
    device = torch.device(device)
    was_training = encoder.training
    encoder.to(device).eval()
    try:
        out = np.empty((len(images), encoder.out_dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start:start + batch_size]).to(device)
            out[start:start + len(batch)] = encoder(to_input(batch))[0].float().cpu().numpy()
        return out
    finally:
        encoder.train(was_training)
