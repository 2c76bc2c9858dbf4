"""The networks of the report's Tables I-V: encoder, statistics networks, discriminator, classifier.

Sizes the report leaves out follow the earlier implementations at the paper's base width 64
(docs/facts.md, "Networks") and scale with `width`, so a reduced `width` shrinks every network, not
just the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from dismi.util.errors import DismiError

MAP_SIZE = 5  # spatial size of C(X): 64 -> 61 -> 29 -> 13 -> 5 with no padding
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
        if hasattr(m, "seeded_init"):
            m.seeded_init(generator)
        elif isinstance(m, (nn.Linear, nn.Conv2d)):
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
    oneDNN (CPU) and cuDNN prefer: on the CPU the encoder's convolutions run several times faster in it
    (docs/performance.md).
    """
    return images.permute(0, 3, 1, 2).float().mul_(1.0 / 127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)


def _down(c_in: int, c_out: int) -> nn.Sequential:
    # Bias-free: the BatchNorm shift right after it makes a conv bias redundant. In-place activations
    # here and after the first conv: neither the conv's nor BatchNorm's backward reads its output, and
    # one pass less over the largest maps (what it saves: docs/performance.md).
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 4, 2, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True)
    )


class Encoder(nn.Module):
    """Table I: conv 4x4/1 (w) -> 4x4/2 (2w) -> 4x4/2 (4w) -> 4x4/2 (8w), dense to `out_dim`."""

    def __init__(self, width: int = 64, out_dim: int = 64):
        super().__init__()
        self.width, self.out_dim = width, out_dim
        self.convs = nn.Sequential(
            nn.Conv2d(3, width, 4, 1),
            nn.LeakyReLU(0.2, inplace=True),
            _down(width, 2 * width),
            _down(2 * width, 4 * width),
            _down(4 * width, 8 * width),
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
        self.convs = nn.Sequential(nn.Conv2d(map_channels, 2 * width, 3), nn.ReLU(), nn.Conv2d(2 * width, width, 3))
        hidden = 8 * width
        self.mlp = nn.Sequential(
            nn.Linear(width + rep_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

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
        self.mlp = nn.Sequential(
            nn.Linear(shared_dim + exclusive_dim, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 1)
        )

    def forward(self, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([s, e], dim=1)).squeeze(1)  # (B,) logits


class Classifier(nn.Module):
    """Table V: two hidden dense layers with BatchNorm and ReLU; returns LOGITS.

    Softmax belongs at prediction time only: cross-entropy applies log-softmax itself, and an
    earlier implementation's softmax-then-cross-entropy understated what the codes hold.
    `hidden` units per layer: dismi.data.results.PROBES says how many each probe kind has.
    """

    def __init__(self, in_dim: int, n_classes: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z)  # (B, n_classes) logits


class ClassifierBank(nn.Module):
    """K Table V classifiers on the same input, computed as one: each layer's K weight blocks in one
    (K, out, in) tensor, so a step runs a few batched ops instead of K times as many small ones (the
    twelve online classifiers were a third of a step's ops: the launches a GPU waits on).

    Classifier k has `hidden[k]` units and `n_classes[k]` classes; blocks are zero-padded to the
    largest. The padding stays inert and zero under training: its units see zero weights, so they
    output 0 and send no gradient, and the padded classes' logits are -inf (no probability, no
    gradient). So the bank computes what K `Classifier` modules compute (`from_classifiers` copies
    them in; a test compares losses, gradients and Adam steps). Returns LOGITS (B, K, max classes).
    """

    def __init__(self, in_dim: int, n_classes: list[int], hidden: list[int]):
        super().__init__()
        if len(n_classes) != len(hidden) or not n_classes:
            raise ValueError(f"one hidden width per classifier: {n_classes} classes, {hidden} hidden")
        k, h, c = len(n_classes), max(hidden), max(n_classes)
        self.in_dim, self.n_classes, self.hidden = in_dim, list(n_classes), list(hidden)
        self.w1, self.b1 = nn.Parameter(torch.empty(k * h, in_dim)), nn.Parameter(torch.empty(k * h))
        self.bn1 = nn.BatchNorm1d(k * h)  # per unit, so one over K * H units is K separate ones
        self.w2, self.b2 = nn.Parameter(torch.empty(k, h, h)), nn.Parameter(torch.empty(k, h))
        self.bn2 = nn.BatchNorm1d(k * h)
        self.w3, self.b3 = nn.Parameter(torch.empty(k, c, h)), nn.Parameter(torch.empty(k, c))
        self.register_buffer("valid", self._valid(), persistent=False)  # (K, C): real classes

    def _valid(self) -> torch.Tensor:
        return torch.arange(max(self.n_classes)) < torch.tensor(self.n_classes)[:, None]

    def blocks(self) -> list[tuple[torch.Tensor, torch.Tensor, int, int]]:
        """(weight, bias, rows, columns) of every classifier's real block of every dense layer, as views."""
        k, h = len(self.hidden), max(self.hidden)
        w1, b1 = self.w1.view(k, h, self.in_dim), self.b1.view(k, h)
        out = []
        for i, (hid, n) in enumerate(zip(self.hidden, self.n_classes)):
            out += [
                (w1[i, :hid], b1[i, :hid], hid, self.in_dim),
                (self.w2[i, :hid, :hid], self.b2[i, :hid], hid, hid),
                (self.w3[i, :n, :hid], self.b3[i, :n], n, hid),
            ]
        return out

    @torch.no_grad()
    def seeded_init(self, generator: torch.Generator) -> None:
        """nn.Linear's default initialisation of each real block (U(+-1/sqrt(fan_in))), zeros elsewhere."""
        for p in (self.w1, self.b1, self.w2, self.b2, self.w3, self.b3):
            p.zero_()
        for weight, bias, _, fan_in in self.blocks():
            bound = 1.0 / math.sqrt(fan_in)
            weight.uniform_(-bound, bound, generator=generator)
            bias.uniform_(-bound, bound, generator=generator)
        self.bn1.reset_parameters()
        self.bn2.reset_parameters()
        self.valid.copy_(self._valid())  # seeded() builds on the meta device: buffers need filling too

    @classmethod
    def from_classifiers(cls, classifiers: list[Classifier]) -> ClassifierBank:
        """A bank computing what `classifiers` (same input size) compute, their weights copied in."""
        dense = [[m for m in c.mlp if isinstance(m, nn.Linear)] for c in classifiers]
        bank = cls(dense[0][0].in_features, [d[2].out_features for d in dense], [d[0].out_features for d in dense])
        h = max(bank.hidden)
        with torch.no_grad():
            for p in bank.parameters():
                p.zero_()
            for (weight, bias, _, _), layer in zip(bank.blocks(), [layer for d in dense for layer in d]):
                weight.copy_(layer.weight)
                bias.copy_(layer.bias)
            for i, c in enumerate(classifiers):
                norms = [m for m in c.mlp if isinstance(m, nn.BatchNorm1d)]
                for mine, theirs in zip((bank.bn1, bank.bn2), norms):
                    n = theirs.num_features
                    for name in ("weight", "bias", "running_mean", "running_var"):
                        getattr(mine, name)[i * h : i * h + n] = getattr(theirs, name)
                    mine.num_batches_tracked.copy_(theirs.num_batches_tracked)
        return bank

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.linear(z, self.w1, self.b1))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K * H) first-layer outputs before BatchNorm -> logits (B, K, C): what follows the first layer."""
        b, (k, h) = len(x), self.w2.shape[:2]
        x = torch.relu(self.bn1(x))  # (B, K * H)
        x = torch.einsum("bki,koi->bko", x.view(b, k, h), self.w2) + self.b2  # (B, K, H)
        x = torch.relu(self.bn2(x.reshape(b, k * h))).view(b, k, h)
        logits = torch.einsum("bki,koi->bko", x, self.w3) + self.b3  # (B, K, C)
        return logits.masked_fill(~self.valid, float("-inf"))


def folded(encoder: Encoder) -> Encoder:
    """A copy of `encoder` for inference: each BatchNorm's running statistics folded into the conv
    before it (eval mode: BatchNorm is then an affine map per channel), one pass less over each map.
    Same function up to float rounding (about 1e-6 of the codes' scale)."""
    copy = Encoder(encoder.width, encoder.out_dim).to(next(encoder.parameters()).device)
    copy.load_state_dict(encoder.state_dict())
    copy.eval()
    for i, block in enumerate(copy.convs):
        if isinstance(block, nn.Sequential):  # _down: conv, BatchNorm, LeakyReLU
            copy.convs[i] = nn.Sequential(fuse_conv_bn_eval(block[0], block[1]), block[2])
    return copy.to(memory_format=torch.channels_last)


@torch.inference_mode()
def encode(
    encoder: Encoder, images: np.ndarray, batch_size: int = 256, device: str | torch.device = "cpu"
) -> np.ndarray:
    """uint8 (N, 64, 64, 3) images -> float32 (N, out_dim) codes, in eval mode (BatchNorm folded, `folded`).

    Moves `encoder` to `device`; the encoder itself is not changed.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape[1:] != (64, 64, 3):
        got = f"{images.shape} {images.dtype}" if isinstance(images, np.ndarray) else type(images).__name__
        raise DismiError(f"encode needs a uint8 array of shape (N, 64, 64, 3), got {got}")
    device = torch.device(device)
    inference = folded(encoder.to(device))
    out = np.empty((len(images), encoder.out_dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        out[start : start + len(batch)] = inference(to_input(batch))[0].float().cpu().numpy()
    return out
