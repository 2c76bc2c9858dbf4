"""The objectives of the report's eq. 5-10: the modules whose forward computes each stage's loss terms.

Eq. 5-7 (shared stage) is `SharedModel.forward`; eq. 8-10 (exclusive stage) is `ExclusiveModel.forward`
with its independence terms (dismi.model.terms: eq. 9-10 is the adversary). The terms themselves (eq. 2's estimator, eq. 6's L1, the
adversarial losses) are in dismi.model.losses; the loop that minimises them is in dismi.train.training. The
equations: docs/facts.md, "Losses".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dismi.data.factors import SIZES
from dismi.data.results import EARLIER, PROBES
from dismi.model import losses
from dismi.model.networks import ClassifierBank, Encoder, GlobalStatistics, LocalStatistics
from dismi.model.terms import Term


def _classifiers(dim: int) -> nn.ModuleDict:
    """Online classifiers, one per factor for each probe kind (PROBES: the paper's Table V and wide), each
    kind's six as one ClassifierBank: logits (B, factors, classes)."""
    return nn.ModuleDict(
        {name: ClassifierBank(dim, list(SIZES), [kind.hidden(n) for n in SIZES]) for name, kind in PROBES.items()}
    )


def _classifiers_loss(classifiers: nn.ModuleDict, rep: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the per-factor online classifiers on a DETACHED representation."""
    rep = rep.detach()
    # every classifier sees the same batch, so the mean over (image, factor) is the mean of their means
    return torch.stack(
        [losses.classifier_loss(bank(rep).flatten(0, 1), classes.flatten()) for bank in classifiers.values()]
    ).mean()


def _earlier_classifiers(dim: int) -> ClassifierBank:
    """The `online_earlier` measurement's classifiers: Table V at the paper's widths, trained the earlier
    implementations' way (`_earlier_terms`). Built after every other module, so that the seeded
    initialisation of the rest is what it is without them."""
    return ClassifierBank(dim, list(SIZES), [EARLIER.hidden(n) for n in SIZES])


def _earlier_terms(bank: ClassifierBank, rep: torch.Tensor, classes: torch.Tensor) -> dict[str, torch.Tensor]:
    """The earlier implementations' online protocol on a DETACHED representation: softmax before the
    cross-entropy, and the accuracy of this very (training) batch, in train mode, before the update."""
    logits = bank(rep.detach())  # (B, factors, classes)
    return {
        "classifier_earlier": losses.softmax_then_cross_entropy(logits.flatten(0, 1), classes.flatten()),
        "hits_earlier": (logits.argmax(2) == classes).float().mean(0).detach(),
    }  # (factors,)


class SharedModel(nn.Module):
    """Shared stage (eq. 5-7): the encoder, the global and local statistics networks, the online
    classifiers. One set for X and Y, as the paper does for Shapes3D."""

    def __init__(
        self,
        width: int,
        dim: int,
        *,
        alpha: float,
        beta: float,
        gamma: float,
        switched: bool,
        l1_reduce: str = "mean",
        online_earlier: bool = False,
    ):
        super().__init__()
        self.alpha, self.beta, self.gamma, self.switched, self.l1_reduce = alpha, beta, gamma, switched, l1_reduce
        self.encoder = Encoder(width, dim)
        self.global_net = GlobalStatistics(8 * width, dim, width)
        self.local_net = LocalStatistics(8 * width, dim, width)
        self.classifiers = _classifiers(dim)
        if online_earlier:  # last: see _earlier_classifiers
            self.classifiers_earlier = _earlier_classifiers(dim)

    def forward(self, x: torch.Tensor, classes: torch.Tensor, negatives: torch.Tensor) -> dict[str, torch.Tensor]:
        s, fmap = self.encoder(x)  # (2B, dim), (2B, 8w, 5, 5)
        z = losses.partner(s, self.switched)
        mi_global = losses.statistics_mi(self.global_net, fmap, z, negatives)
        mi_local = losses.statistics_mi(self.local_net, fmap, z, negatives)
        l1 = losses.l1_distance(*s.chunk(2), reduce=self.l1_reduce)
        terms = {
            "total": -(self.alpha * mi_global + self.beta * mi_local) + self.gamma * l1,
            "global": mi_global,
            "local": mi_local,
            "l1": l1,
            "classifier": _classifiers_loss(self.classifiers, s, classes),
        }
        if hasattr(self, "classifiers_earlier"):
            terms |= _earlier_terms(self.classifiers_earlier, s, classes)
        return terms


class ExclusiveModel(nn.Module):
    """Exclusive stage (eq. 8-10): the exclusive encoder, statistics networks scoring
    (C_sh ++ C_ex, R = S ++ E), the independence terms (dismi.model.terms; the paper's: its adversary), the
    online classifiers on E. The frozen shared encoder is not part of it: it is an input, never trained or
    saved here. `terms` are built inside the same seeded factory, after the statistics networks, so each
    network's initialisation does not depend on which terms are on.
    """

    def __init__(
        self,
        shared_width: int,
        shared_dim: int,
        width: int,
        dim: int,
        *,
        alpha: float,
        beta: float,
        terms: Callable[[int, int], list[Term]],
        online_earlier: bool = False,
    ):
        super().__init__()
        self.alpha, self.beta = alpha, beta
        channels, rep_dim = 8 * shared_width + 8 * width, shared_dim + dim  # 1024, 128 at the paper's sizes
        self.encoder = Encoder(width, dim)
        self.global_net = GlobalStatistics(channels, rep_dim, width)
        self.local_net = LocalStatistics(channels, rep_dim, width)
        self.terms = nn.ModuleList(terms(shared_dim, dim))
        self.classifiers = _classifiers(dim)
        if online_earlier:  # last: see _earlier_classifiers
            self.classifiers_earlier = _earlier_classifiers(dim)

    def forward(
        self,
        s: torch.Tensor,
        fmap_sh: torch.Tensor,
        e: torch.Tensor,
        fmap_ex: torch.Tensor,
        classes: torch.Tensor,
        negatives: torch.Tensor,
        noise: torch.Tensor | None = None,
        log_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """`negatives`: (2B,) one negative row per image (eq. 2's estimator, losses.statistics_mi) or (2B, N)
        candidate rows, its own first (InfoNCE over them, losses.statistics_infonce, weighted by
        `log_weights` (2B, N) when given). `noise` (2B, dim): added to E where the MI terms see it (a `noisy`
        term's channel); the terms and classifiers see E itself."""
        r = torch.cat([s, e if noise is None else e + noise], dim=1)  # (2B, shared_dim + dim)
        fmap = torch.cat([fmap_sh, fmap_ex], dim=1)  # (2B, 8w_sh + 8w, 5, 5)
        if negatives.dim() == 1:
            mi_global = losses.statistics_mi(self.global_net, fmap, r, negatives)
            mi_local = losses.statistics_mi(self.local_net, fmap, r, negatives)
        else:
            mi_global = losses.statistics_infonce(self.global_net, fmap, r, negatives, log_weights)
            mi_local = losses.statistics_infonce(self.local_net, fmap, r, negatives, log_weights)
        total = -(self.alpha * mi_global + self.beta * mi_local)
        out = {"global": mi_global, "local": mi_local}
        for term in self.terms:
            out[term.encoder_log] = charge = term(s, e)
            total = total + term.weight * charge
        out |= {"total": total, "classifier": _classifiers_loss(self.classifiers, e, classes)}
        if hasattr(self, "classifiers_earlier"):
            out |= _earlier_terms(self.classifiers_earlier, e, classes)
        return out
