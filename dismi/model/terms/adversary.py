"""The paper's adversary (eq. 9-10): a discriminator D(S, E) tells joint from shuffled samples, and the
encoder is charged for the joint samples D recognises."""

from __future__ import annotations

import torch

from dismi.model import losses
from dismi.model.networks import Discriminator
from dismi.model.terms.base import Term


class Adversary(Term):
    """Weight lambda_adv. D's loss is -(eq. 9) on (S, E) against (S, E[shuffle]), a within-view shuffle; the
    encoder's is eq. 10's non-saturating form. X and Y are summed, as for every term of eq. 8."""

    encoder_log = "adv_encoder"
    own_log = "adv_discriminator"
    measured_at_zero = True  # the paper's lambda_adv = 0 ablation still trains D, and reads its loss

    def __init__(self, shared_dim: int, dim: int, weight: float):
        super().__init__(weight)
        self.discriminator = Discriminator(shared_dim, dim)
        self._d_loss = self.discriminator_loss

    def discriminator_loss(self, s: torch.Tensor, e: torch.Tensor, shuffle: torch.Tensor) -> torch.Tensor:
        return losses.views_sum(losses.discriminator_loss, self.discriminator(s, e), self.discriminator(s, e[shuffle]))

    def own_loss(self, s, e, generator):
        shuffle = losses.other_in_view(len(e) // 2, generator, e.device)  # (2B,)
        return self._d_loss(s, e, shuffle)

    def compile_with(self, wrap):
        self._d_loss = wrap(self.discriminator_loss)

    def forward(self, s, e):
        return losses.views_sum(losses.encoder_adversarial_loss, self.discriminator(s, e))
