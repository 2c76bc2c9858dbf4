"""How dependent S and E are, judged by fresh critics on frozen codes (not by the training discriminator).

A critic learns to tell joint (S, E) codes of the same image from shuffled ones (S of one image, E of
another) on the train split, and is scored on the test split: its held-out loss is the eq. 9 loss,
joint and shuffled cross-entropies summed, 2 ln 2 when it cannot tell them apart. The loss implies a
Jensen-Shannon divergence between the joint and the product of marginals, JSD = ln 2 - loss / 2 (nats,
0 when independent), the quantity eq. 2's estimator bounds. A calibration codes E shuffled across
images once, before training: independent by construction, so its loss says what "independent" reads
as with this critic, this data and this training (a critic that overfits scores above 2 ln 2).

Two critics, side by side: the paper's Table IV discriminator on [S, E], and a separable one,
f(S) . g(E), whose shuffled scores reuse the joint pass's embeddings.

Like the probes, every critic of a kind trains in one batched bank (one group per (S, E) pair), all
groups seeing the same minibatches and the same shuffles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from dismi.model import losses
from dismi.model.networks import DISCRIMINATOR_HIDDEN, seeded

CRITICS = ("paper", "separable")
CHANCE_LOSS = 2 * math.log(2)  # the eq. 9 loss of a critic that cannot tell joint from shuffled
SEPARABLE_HIDDEN = (256, 256, 64)  # f and g: two hidden layers, then the embedding dot-multiplied


def implied_jsd(loss: float) -> float:
    """JSD (nats) between joint and shuffled implied by a critic's held-out eq. 9 loss: ln 2 - loss / 2."""
    return math.log(2) - loss / 2


class GroupedMLP(nn.Module):
    """G independent MLPs (ReLU between layers) as batched matmuls: (G, B, in) -> (G, B, out)."""

    def __init__(self, mlps: Sequence[nn.Sequential]):
        super().__init__()
        layers = [[m for m in mlp if isinstance(m, nn.Linear)] for mlp in mlps]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].weight.detach().t() for ls in layers])) for i in range(len(layers[0]))
        )  # (G, in, out)
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].bias.detach()[None] for ls in layers])) for i in range(len(layers[0]))
        )  # (G, 1, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = torch.relu(x)
        return x


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


class Critics(nn.Module):
    """G critics of one kind, group g scoring pairs of group g: logits high = "shuffled" (as D)."""

    def __init__(self, kind: str, groups: int, s_dim: int, e_dim: int, generator: torch.Generator):
        super().__init__()
        if kind not in CRITICS:
            raise ValueError(f"critic must be one of {CRITICS}, got {kind!r}")
        self.kind = kind
        if kind == "paper":  # Table IV: dense 1000, 200, 1 on [S, E]; every group from the same draw
            net = seeded(lambda: _mlp((s_dim + e_dim, *DISCRIMINATOR_HIDDEN, 1)), generator)
            # The first layer on [S, E] is W_S S + W_E E + b: computed once per image, the shuffled
            # pairs recombine the parts (a fifth of the critic's arithmetic).
            w = net[0].weight.detach().t()  # (Ds + De, 1000)
            self.w_s = nn.Parameter(w[:s_dim].expand(groups, -1, -1).clone())  # (G, Ds, 1000)
            self.w_e = nn.Parameter(w[s_dim:].expand(groups, -1, -1).clone())  # (G, De, 1000)
            self.b1 = nn.Parameter(net[0].bias.detach().expand(groups, 1, -1).clone())  # (G, 1, 1000)
            self.rest = GroupedMLP([net[2:]] * groups)
        else:
            f = seeded(lambda: _mlp((s_dim, *SEPARABLE_HIDDEN)), generator)
            g = seeded(lambda: _mlp((e_dim, *SEPARABLE_HIDDEN)), generator)
            self.f, self.g = GroupedMLP([f] * groups), GroupedMLP([g] * groups)
            self.bias = nn.Parameter(torch.zeros(groups, 1))

    def forward(self, s: torch.Tensor, e: torch.Tensor, shuffle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(G, B, Ds), (G, B, De), (B,) rows -> logits of joint (S_i, E_i) and shuffled (S_i, E_shuffle[i]), (G, B) each."""
        if self.kind == "paper":
            hs, he = torch.baddbmm(self.b1, s, self.w_s), torch.bmm(e, self.w_e)  # (G, B, 1000) each
            joint = self.rest(torch.relu(hs + he)).squeeze(2)
            shuffled = self.rest(torch.relu(hs + he[:, shuffle])).squeeze(2)
            return joint, shuffled
        fs, ge = self.f(s), self.g(e)  # (G, B, 64)
        scale = 1 / math.sqrt(fs.shape[2])
        return (fs * ge).sum(2) * scale + self.bias, (fs * ge[:, shuffle]).sum(2) * scale + self.bias


def _loss(joint: torch.Tensor, shuffled: torch.Tensor) -> torch.Tensor:
    """(G,) eq. 9 losses (dismi.model.losses.discriminator_loss) of G groups' (G, B) logits."""
    return nn.functional.softplus(-shuffled).mean(1) + nn.functional.softplus(joint).mean(1)


def _derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) a random rotation of 0..n-1 by 1..n-1: every row paired with another (losses.other_in_view)."""
    return losses.other_in_view(n, generator, torch.device("cpu"))[:n]


def critic_losses(
    pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    kind: str,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[int], None] | None = None,
) -> list[float]:
    """Held-out eq. 9 loss of a fresh critic of `kind` for each (S_train, E_train, S_test, E_test) of
    `pairs` (codes of the same images, same sizes), trained `epochs` epochs with Adam on the train rows
    (joint vs E shuffled within the minibatch) and scored on all test rows (joint vs E shuffled by a
    seeded rotation). Codes are standardised with the train rows' statistics, as for the probes."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)

    def stack(k: int) -> torch.Tensor:
        return torch.as_tensor(np.stack([p[k] for p in pairs]), dtype=torch.float32, device=device)

    s_train, e_train, s_test, e_test = (stack(k) for k in range(4))  # (G, N, D)
    stats = [
        (x.mean(1, keepdim=True), x.std(1, unbiased=False, keepdim=True).clamp_min(1e-6)) for x in (s_train, e_train)
    ]
    (s_train, s_test), (e_train, e_test) = [
        [(x - m) / sd for x in xs] for xs, (m, sd) in zip(((s_train, s_test), (e_train, e_test)), stats)
    ]
    critics = Critics(kind, len(pairs), s_train.shape[2], e_train.shape[2], gen).to(device)
    opt = torch.optim.Adam(critics.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))
    for epoch in range(1, epochs + 1):
        order = torch.randperm(s_train.shape[1], generator=gen).to(device)
        for batch in order.split(batch_size):
            if len(batch) < 2:
                continue  # nothing to shuffle against
            shuffle = _derangement(len(batch), gen).to(device)
            opt.zero_grad(set_to_none=True)
            _loss(*critics(s_train[:, batch], e_train[:, batch], shuffle)).sum().backward()
            opt.step()
        if on_epoch is not None:
            on_epoch(epoch)
    with torch.no_grad():
        return _loss(*critics(s_test, e_test, _derangement(s_test.shape[1], gen).to(device))).tolist()


def calibration(
    s_train: np.ndarray, e_train: np.ndarray, s_test: np.ndarray, e_test: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same codes with E shuffled across images within each split: S and E independent by construction."""
    rng = np.random.default_rng(seed)
    return s_train, e_train[rng.permutation(len(e_train))], s_test, e_test[rng.permutation(len(e_test))]
