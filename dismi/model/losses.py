"""Loss terms of the report's eq. 2-10, on plain tensors.

A training batch holds 2B images: the B X images of B pairs, then their B Y partners. Eq. 5, 8
and 10 sum a term for X and a term for Y, hence `views_sum`.
"""

from __future__ import annotations

from collections.abc import Callable

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


def partner_rows(n_pairs: int, device: torch.device) -> torch.Tensor:
    """(2B,) row index pointing every X row at its Y partner and every Y row at its X partner.

    As the negatives of the exclusive stage's MI terms (`negatives_ex` "partner"), each feature map is scored
    against the representation of the image it shares scale, shape and orientation with: the statistics
    network then gains nothing from what a code holds of those factors, only from what tells the two images
    of a pair apart (their hues), so the terms estimate MI conditional on the shared factors.
    """
    return partner(torch.arange(2 * n_pairs, device=device), switched=True)


# Whose representation the exclusive stage's MI terms score each feature map with as a negative
# (negatives_ex): another image of the batch (the paper) or the pair's other image
NEGATIVES = ("batch", "partner")


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


def softmax_then_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The earlier implementations' classifier loss, kept only to MEASURE their protocol: cross-entropy of
    softmax(logits), i.e. a log-softmax applied to probabilities. Its gradient vanishes as the classifier
    grows confident, so it understates what a code holds. Classes whose logit is -inf (a ClassifierBank's
    padding) stay out of both softmaxes."""
    logits = logits.float()
    probs = torch.where(torch.isneginf(logits), logits, logits.softmax(-1))  # padding stays -inf
    return F.cross_entropy(probs, targets)


def discriminator_reversal_loss(joint_logits: torch.Tensor, shuffled_logits: torch.Tensor) -> torch.Tensor:
    """The encoder's side of eq. 10 read literally: the encoder maximises D's whole loss, through the joint
    AND the shuffled samples (gradient reversal); minimised, hence the minus."""
    return -discriminator_loss(joint_logits, shuffled_logits)


ADV_LOSSES = ("nonsaturating", "reversal")


def squared_distances(z: torch.Tensor) -> torch.Tensor:
    """(n, d) -> (n, n) ||z_i - z_j||^2, clamped at 0 (the expanded form can round below it)."""
    z = z.float()
    sq = z.pow(2).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * z @ z.T).clamp_min(0)


def gaussian_gram(z: torch.Tensor) -> torch.Tensor:
    """(n, d) -> (n, n) Gaussian kernel exp(-||z_i - z_j||^2 / (2 sigma^2)), sigma^2 the median of the
    off-diagonal squared distances (the median heuristic), DETACHED: the encoder cannot lower a dependence
    measure by moving the bandwidth, and scaling z scales sigma with it, so the kernel is scale-free."""
    d2 = squared_distances(z)
    n = len(z)
    off = d2[~torch.eye(n, dtype=torch.bool, device=z.device)]
    bandwidth = off.median().detach().clamp_min(1e-12)  # all points equal: any bandwidth gives K = 1
    return torch.exp(-d2 / (2 * bandwidth))


def hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Biased HSIC of two (n, n) Gram matrices: tr(K H L H) / (n - 1)^2, H = I - 11^T / n centring."""
    n = len(k)
    kc = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()  # H K H
    return (kc * l).sum() / (n - 1) ** 2  # tr(HKH L) = tr(K H L H); L symmetric


def normalised_hsic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """HSIC(A, B) / sqrt(HSIC(A, A) HSIC(B, B)) with median-bandwidth Gaussian kernels (kernel CKA): 0 for
    independent samples, 1 when one determines the other's kernel, unchanged by scaling either, so an
    encoder cannot shrink its way out of it."""
    k, l = gaussian_gram(a), gaussian_gram(b)
    return hsic(k, l) / (hsic(k, k) * hsic(l, l)).clamp_min(1e-12).sqrt()


WHITENING_SHRINKAGE = 0.1  # share of the mean variance added to every direction: a batch of 64 has ~rank-63 covariance


def whitened(z: torch.Tensor, shrinkage: float = WHITENING_SHRINKAGE) -> torch.Tensor:
    """(n, d) -> (n, d): z centred and whitened by its batch covariance, shrunk towards a multiple of the
    identity, C' = (1 - shrinkage) C + shrinkage tr(C) / d I, so that every direction of z has about unit
    variance. Gradients flow through the whitening: a code cannot make a direction small to hide it."""
    z = z.float()
    z = z - z.mean(0)
    n, d = z.shape
    cov = z.T @ z / max(n - 1, 1)  # (d, d)
    mean_variance = cov.diagonal().mean().clamp_min(1e-12)
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    cov = (1 - shrinkage) * cov + shrinkage * mean_variance * eye
    chol = torch.linalg.cholesky(cov)  # cov = L L^T; z L^-T has identity covariance
    return torch.linalg.solve_triangular(chol, z.T, upper=False).T


def whitened_hsic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """normalised_hsic(A, whitened(B)). One Gaussian kernel on B as it comes lets B hide a dependence under its
    larger directions: its distances, hence its Gram, are ruled by them, while a probe reads the small ones
    back (its first layer can take any direction, its BatchNorm gives it unit variance). Whitened, every
    direction of B weighs alike in the kernel: a mixture of the shared factor with larger independent
    directions is undone, as the probe would undo it."""
    return normalised_hsic(a, whitened(b))


def as_it_comes(z: torch.Tensor) -> torch.Tensor:
    return z


# What lambda_hsic's kernel sees of E (hsic_kernel): the code as it comes, or whitened
HSIC_KERNELS = {"joint": as_it_comes, "whitened": whitened}
# What E is held independent of (hsic_with): S of the same image, S of the pair's other image, or E of the
# pair's other image (the pair shares only the shared factors, so that dependence is theirs alone)
HSIC_WITH = ("shared", "switched", "pair")
