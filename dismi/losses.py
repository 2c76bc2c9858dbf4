"""Loss terms of the report's eq. 2-10, on plain tensors.

A training batch holds 2B images: the B X images of B pairs, then their B Y partners. Eq. 5, 8
and 10 sum a term for X and a term for Y, hence `views_sum`.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def views_sum(term: Callable[..., torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
    """term(X rows) + term(Y rows): each tensor's first half is X, its second half Y."""
    halves = [t.chunk(2) for t in tensors]
    return term(*(h[0] for h in halves)) + term(*(h[1] for h in halves))


def jsd_mi(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """Eq. 2, the Jensen-Shannon MI estimate: E_joint[-softplus(-T)] - E_marginal[softplus(T)]."""
    return -F.softplus(-joint.float()).mean() - F.softplus(marginal.float()).mean()


def partner(rep: torch.Tensor, switched: bool) -> torch.Tensor:
    """The representation each image of the batch is scored with (eq. 5).

    Switched: X with S_Y and Y with S_X (swap the halves); not switched: each image with its own.
    """
    return torch.cat(rep.chunk(2)[::-1]) if switched else rep


def other_in_view(n_pairs: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(2B,) row index pointing every row at another row of the same half, a random rotation.

    rep[index] pairs each feature map with the representation of a different image of the batch
    (the negative, marginal samples) while X rows keep drawing from X rows and Y rows from Y
    rows, so a switched term stays switched in its negative part. No host sync: the shift is drawn
    and used on the device.
    """
    shift = torch.randint(1, n_pairs, (1,), generator=generator, device=device)
    rows = (torch.arange(n_pairs, device=device) + shift) % n_pairs
    return torch.cat([rows, rows + n_pairs])


def statistics_mi(net: nn.Module, fmap: torch.Tensor, rep: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Global or local MI term (eq. 3-4), X and Y summed: each image's feature map scored with `rep`
    (joint) and with rep[negatives] (marginal). `net` is a statistics network (embed, score); the
    joint and marginal pairs go through it as one batch, the map part computed once."""
    h = net.embed(fmap)
    joint, marginal = net.score(torch.cat([h, h]), torch.cat([rep, rep[negatives]])).chunk(2)
    return views_sum(jsd_mi, joint, marginal)


L1_REDUCTIONS = ("sum", "mean")


def l1_distance(s_x: torch.Tensor, s_y: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """Eq. 6, E ||S_X - S_Y||_1 over the batch.

    reduce="sum": the norm as eq. 6 writes it, summed over the D coordinates. reduce="mean": also
    averaged over coordinates, as the earlier implementations' L1Loss did; that divides gamma by D
    (64). docs/reproduction.md lists the ablation that measures the difference.
    """
    diff = (s_x.float() - s_y.float()).abs()  # (B, D)
    if reduce == "sum":
        return diff.sum(dim=1).mean()
    if reduce == "mean":
        return diff.mean()
    raise ValueError(f"reduce must be one of {L1_REDUCTIONS}, got {reduce!r}")


def classifier_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on LOGITS; a softmax before it would be applied twice."""
    return F.cross_entropy(logits.float(), targets)


def discriminator_loss(joint_logits: torch.Tensor, shuffled_logits: torch.Tensor) -> torch.Tensor:
    """-(eq. 9): D labels shuffled (S_X, E_X') samples real (1) and joint (S_X, E_X) samples fake (0)."""
    return F.softplus(-shuffled_logits.float()).mean() + F.softplus(joint_logits.float()).mean()


def encoder_adversarial_loss(joint_logits: torch.Tensor) -> torch.Tensor:
    """The encoder's side of eq. 10: make joint samples look shuffled to D (non-saturating form)."""
    return F.softplus(-joint_logits.float()).mean()
