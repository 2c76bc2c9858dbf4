"""An information bottleneck on E: a unit-variance Gaussian channel and its KL charge."""

from __future__ import annotations

import torch

from dismi.model import losses
from dismi.model.terms.base import Term


def kl_per_dimension(mu: torch.Tensor) -> torch.Tensor:
    """(n, d) channel means -> (d,) KL(N(mu, 1) || N(0, 1)) = mu^2 / 2 per coordinate, mean over rows."""
    return 0.5 * mu.float().pow(2).mean(0)


class Bottleneck(Term):
    """Weight beta_kl_ex. The MI terms see E + eps, eps ~ N(0, I) (`noisy`): what E tells them passes a
    unit-variance Gaussian channel, and this term charges its KL to the prior, KL(N(E, I) || N(0, I)) =
    ||E||^2 / 2 per image, an upper bound on the information the channel carries. The encoder's output is the
    channel's mean: evaluation, snapshots, the online classifiers and the adversary see it, noise-free. X and
    Y are summed, as for every term of eq. 8."""

    encoder_log = "kl"
    noisy = True

    def __init__(self, shared_dim: int, dim: int, weight: float):
        super().__init__(weight)

    def forward(self, s, e):
        return losses.views_sum(lambda mu: kl_per_dimension(mu).sum(), e)
