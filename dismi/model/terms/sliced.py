"""Sliced mutual information between S and E (Chen et al., "Scalable Infomin Learning", NeurIPS 2022):
the MI of one-dimensional projections, here Gaussian, at slices learnt to find the most of it."""

from __future__ import annotations

import torch
from torch import nn

from dismi.model import losses
from dismi.model.terms.base import Term

SLICES = 8  # slice pairs (theta_k, phi_k) learnt side by side


def gaussian_slice_mi(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, K) projections of S and of E -> the mean over the K slices of -1/2 ln(1 - rho_k^2), rho_k the
    correlation of a[:, k] and b[:, k] over the rows: the MI of two jointly Gaussian variables, in nats."""
    a = a.float() - a.float().mean(0)
    b = b.float() - b.float().mean(0)
    rho = (a * b).sum(0) / (a.pow(2).sum(0) * b.pow(2).sum(0)).clamp_min(1e-12).sqrt()
    return -0.5 * torch.log1p(-rho.pow(2).clamp_max(1 - 1e-6)).mean()


class SlicedMI(Term):
    """Weight lambda_slice. SLICES pairs of directions (theta in S's space, phi in E's) are the term's own
    networks: they climb the sliced MI of S and the DETACHED E (their own Adam, before the encoder's step),
    so the slices find the directions along which E follows S, and the encoder is charged the sliced MI at
    them (max-sliced MI, linear slices: it charges what a linear read-out of E shares with one of S). X and
    Y are summed, as for every term of eq. 8."""

    encoder_log = "sliced_mi"
    own_log = "slices"

    def __init__(self, shared_dim: int, dim: int, weight: float):
        super().__init__(weight)
        self.theta = nn.Parameter(torch.empty(shared_dim, SLICES))  # (shared_dim, K)
        self.phi = nn.Parameter(torch.empty(dim, SLICES))  # (dim, K)

    @torch.no_grad()
    def seeded_init(self, generator: torch.Generator) -> None:  # dismi.model.networks.seeded: random slices
        self.theta.normal_(generator=generator)
        self.phi.normal_(generator=generator)

    def sliced_mi(self, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        # directions: a slice's scale does not change a correlation, so none is imposed
        return losses.views_sum(lambda s, e: gaussian_slice_mi(s @ self.theta, e @ self.phi), s, e)

    def own_loss(self, s, e, generator):
        return -self.sliced_mi(s, e)

    def forward(self, s, e):
        return self.sliced_mi(s, e)
