"""The interface of an independence term (dismi.model.terms)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Term(nn.Module):
    """A charge on E for what it shares with S, weighted into the exclusive objective (eq. 8's last term).

    `forward(s, e)` is the encoder's loss, unweighted, E not detached; it is logged as loss/<encoder_log>.
    A term with networks of its own sets `own_log` and implements `own_loss(s, e, generator)` on DETACHED E:
    the trainer steps them with their own Adam before the encoder's step and logs loss/<own_log>. A `noisy`
    term makes the MI terms see E plus unit Gaussian noise (a channel whose information it charges).
    """

    encoder_log: str
    own_log: str | None = None
    noisy: bool = False
    measured_at_zero: bool = False  # built (and its networks trained, its losses logged) at weight 0 too

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def own_loss(self, s: torch.Tensor, e: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no networks of its own")

    def compile_with(self, wrap: Callable[[Callable], Callable]) -> None:
        """Let the trainer compile the term's pure tensor functions (`wrap` is the identity when it does not)."""

    def logs(self) -> tuple[str, ...]:
        return (self.encoder_log,) + ((self.own_log,) if self.own_log else ())
