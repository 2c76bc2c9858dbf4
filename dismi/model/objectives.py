"""The objectives of the report's eq. 5-10: the modules whose forward computes each stage's loss terms.

Eq. 5-7 (shared stage) is `SharedModel.forward`; eq. 8-10 (exclusive stage) is `ExclusiveModel.forward`
with `ExclusiveModel.discriminator_loss`. The terms themselves (eq. 2's estimator, eq. 6's L1, the
adversarial losses) are in dismi.model.losses; the loop that minimises them is in dismi.train.training. The
equations: docs/facts.md, "Losses".
"""

from __future__ import annotations

import torch
from torch import nn

from dismi.data.factors import SIZES
from dismi.data.results import EARLIER, PROBES
from dismi.model import losses
from dismi.model.networks import ClassifierBank, Discriminator, Encoder, GlobalStatistics, LocalStatistics


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
        if l1_reduce not in losses.L1_REDUCTIONS:
            raise ValueError(f"l1_reduce must be one of {losses.L1_REDUCTIONS}, got {l1_reduce!r}")
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
    (C_sh ++ C_ex, R = S ++ E), the discriminator D(S, E), the online classifiers on E.
    The frozen shared encoder is not part of it: it is an input, never trained or saved here.

    Independence options (docs/facts.md, "Independence options"; the defaults are the paper's adversary):
    `adv_loss` "reversal" makes the encoder maximise D's whole loss (eq. 10 literally) instead of the
    non-saturating form; `lambda_hsic` > 0 adds the normalised HSIC between S and E, per view, a
    dependence measure with no adversary to fool, with a Gaussian kernel on E as it comes (`hsic_kernel`
    "joint") or on E whitened over the batch ("whitened": losses.whitened_hsic). `hsic_with` "switched"
    measures E_X against S_Y (and E_Y against S_X), as eq. 5 pairs C(X) with S_Y: the pair's shared
    factors are equal and its hues drawn independently, so S_Y carries X's shared factors but none of the
    hues of X that S may hold. `hsic_with` "pair" measures E_X against E_Y, both through the kernel: the
    pair's shared factors are equal and its hues independent, so E_X and E_Y depend on each other only
    through the shared factors E holds; the term spares the hues by construction and never reads S, whose
    own leftover hues do not matter. `hsic_on` False leaves the term out of the objective but still measured
    (the trainer's warm-up, `hsic_start`).
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
        lambda_adv: float,
        adv_loss: str = "nonsaturating",
        lambda_hsic: float = 0.0,
        hsic_kernel: str = "joint",
        hsic_with: str = "shared",
        online_earlier: bool = False,
    ):
        super().__init__()
        if adv_loss not in losses.ADV_LOSSES:
            raise ValueError(f"adv_loss must be one of {losses.ADV_LOSSES}, got {adv_loss!r}")
        if hsic_kernel not in losses.HSIC_KERNELS:
            raise ValueError(f"hsic_kernel must be one of {tuple(losses.HSIC_KERNELS)}, got {hsic_kernel!r}")
        if hsic_with not in losses.HSIC_WITH:
            raise ValueError(f"hsic_with must be one of {losses.HSIC_WITH}, got {hsic_with!r}")
        self.alpha, self.beta, self.lambda_adv = alpha, beta, lambda_adv
        self.adv_loss, self.lambda_hsic = adv_loss, lambda_hsic
        self.kernel_input, self.hsic_with = losses.HSIC_KERNELS[hsic_kernel], hsic_with
        self.hsic_on = True
        channels, rep_dim = 8 * shared_width + 8 * width, shared_dim + dim  # 1024, 128 at the paper's sizes
        self.encoder = Encoder(width, dim)
        self.global_net = GlobalStatistics(channels, rep_dim, width)
        self.local_net = LocalStatistics(channels, rep_dim, width)
        self.discriminator = Discriminator(shared_dim, dim)
        self.classifiers = _classifiers(dim)
        if online_earlier:  # last: see _earlier_classifiers
            self.classifiers_earlier = _earlier_classifiers(dim)

    def discriminator_loss(self, s: torch.Tensor, e: torch.Tensor, shuffle: torch.Tensor) -> torch.Tensor:
        """D's loss on joint (S, E) and shuffled (S, E[shuffle]) samples; pass E detached."""
        return losses.views_sum(losses.discriminator_loss, self.discriminator(s, e), self.discriminator(s, e[shuffle]))

    def encoder_adversarial_loss(self, s: torch.Tensor, e: torch.Tensor, shuffle: torch.Tensor | None) -> torch.Tensor:
        """The encoder's adversarial term (eq. 10), X and Y summed, in the `adv_loss` form; E not detached.
        "reversal" needs `shuffle`, the shuffled samples D was just trained on."""
        if self.adv_loss == "nonsaturating":
            return losses.views_sum(losses.encoder_adversarial_loss, self.discriminator(s, e))
        if shuffle is None:
            raise ValueError("adv_loss='reversal' scores shuffled samples too: pass `shuffle`")
        return losses.views_sum(
            losses.discriminator_reversal_loss, self.discriminator(s, e), self.discriminator(s, e[shuffle])
        )

    def dependence(self, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The lambda_hsic term: normalised HSIC of E with S per view (X and Y summed), S of the same image
        or (`hsic_with` "switched") of the pair's other one; the kernel sees E as `hsic_kernel` says.
        "pair": of E_X with E_Y, counted once per view like the others (HSIC is symmetric: twice the one)."""
        see = self.kernel_input
        if self.hsic_with == "pair":
            return losses.views_sum(lambda a, b: losses.normalised_hsic(see(a), see(b)), losses.partner(e, True), e)
        s = losses.partner(s, self.hsic_with == "switched")
        return losses.views_sum(lambda s_, e_: losses.normalised_hsic(s_, see(e_)), s, e)

    def forward(
        self,
        s: torch.Tensor,
        fmap_sh: torch.Tensor,
        e: torch.Tensor,
        fmap_ex: torch.Tensor,
        classes: torch.Tensor,
        negatives: torch.Tensor,
        shuffle: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        r = torch.cat([s, e], dim=1)  # (2B, shared_dim + dim)
        fmap = torch.cat([fmap_sh, fmap_ex], dim=1)  # (2B, 8w_sh + 8w, 5, 5)
        mi_global = losses.statistics_mi(self.global_net, fmap, r, negatives)
        mi_local = losses.statistics_mi(self.local_net, fmap, r, negatives)
        adv = self.encoder_adversarial_loss(s, e, shuffle)
        terms = {
            "total": -(self.alpha * mi_global + self.beta * mi_local) + self.lambda_adv * adv,
            "global": mi_global,
            "local": mi_local,
            "adv_encoder": adv,
            "classifier": _classifiers_loss(self.classifiers, e, classes),
        }
        if self.lambda_hsic > 0:  # off: not computed, so the default step is today's to the bit
            dependence = self.dependence(s, e)
            if self.hsic_on:
                terms["total"] = terms["total"] + self.lambda_hsic * dependence
            terms["hsic"] = dependence
        if hasattr(self, "classifiers_earlier"):
            terms |= _earlier_terms(self.classifiers_earlier, e, classes)
        return terms
