"""Loss terms of the report's eq. 2-10, on plain tensors.

A training batch holds 2B images: the B X images of B pairs, then their B Y partners. Eq. 5, 8
and 10 sum a term for X and a term for Y, hence `views_sum`.
"""

from __future__ import annotations

import math
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


def group_candidates(n_pairs: int, group: int, device: torch.device) -> torch.Tensor:
    """(2B, 2 * group) rows each image is scored with by `statistics_infonce`: itself first, then the other
    images of its group. The B pairs come in groups of `group` consecutive pairs (an anchor pair and its
    nearest pairs by S, `negatives_ex` "conditional"); a group's images are its pairs' X and Y rows."""
    if n_pairs % group:
        raise ValueError(f"{n_pairs} pairs do not split into groups of {group}")
    rows = torch.arange(2 * n_pairs, device=device)
    members = torch.cat([rows[:n_pairs].view(-1, group), rows[n_pairs:].view(-1, group)], 1)  # (G, 2g)
    of = (rows % n_pairs) // group  # each row's group
    candidates = members[of].clone()  # (2B, 2g)
    at = (candidates == rows[:, None]).float().argmax(1)  # each row's place in its group
    candidates[rows, at] = candidates[:, 0]
    candidates[:, 0] = rows
    return candidates


# Whose representation the exclusive stage's MI terms score each feature map with as a negative
# (negatives_ex): another image of the batch (the paper), the pair's other image, the other images of
# a group of pairs that share the shared factors by S (InfoNCE over the group), or the other images of a
# group of random pairs weighted by a kernel on S (weighted InfoNCE over the group)
NEGATIVES = ("batch", "partner", "conditional", "kernel")


def kernel_log_weights(s: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(2B, N) log-weights of each row's `candidates` for `infonce_mi`, from the frozen S (2B, shared_dim):
    column 0 (the joint sample) 0, each negative j ln((N - 1) w_j), w a Gaussian kernel on S,
    exp(-||S_i - S_j||^2 / h), normalised over the row's negatives, h the median squared distance of the
    batch's negatives. The weighted sum (N - 1) sum_j w_j exp(T_j) estimates E[exp T] under p(E | S), so
    the term is InfoNCE conditional on S (Tsai et al. 2022, "Conditional Contrastive Learning with Kernel",
    with the Nadaraya-Watson weights in place of their kernel-ridge ones); uniform weights give InfoNCE."""
    s = s.detach().float()
    d2 = (s[candidates[:, :1]] - s[candidates[:, 1:]]).pow(2).sum(-1)  # (2B, N - 1)
    h = d2.median().clamp_min(torch.finfo(d2.dtype).tiny)
    log_w = (-d2 / h).log_softmax(1) + math.log(candidates.shape[1] - 1)
    return torch.cat([torch.zeros_like(log_w[:, :1]), log_w], 1)


def statistics_mi(net: nn.Module, fmap: torch.Tensor, rep: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Global or local MI term (eq. 3-4), X and Y summed: each image's feature map scored with `rep`
    (joint) and with rep[negatives] (marginal). `net` is a statistics network (embed, score); the
    joint and marginal pairs go through it as one batch, the map part computed once."""
    h = net.embed(fmap)
    joint, marginal = net.score(torch.cat([h, h]), torch.cat([rep, rep[negatives]])).chunk(2)
    return views_sum(jsd_mi, joint, marginal)


def infonce_mi(scores: torch.Tensor, log_weights: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE (van den Oord et al. 2018) of (n, N[, L]) scores whose column 0 is each row's joint sample:
    ln N - cross-entropy of picking it among the N, averaged over rows (and locations L). A lower bound on
    MI that grows with the number of negatives N - 1, up to ln N. `log_weights` (n, N): added to the
    scores, each negative's exp(T) counted ln-weight times (`kernel_log_weights`)."""
    n, scores = scores.shape[1], scores.float()
    if log_weights is not None:
        scores = scores + log_weights.view(*log_weights.shape, *[1] * (scores.dim() - 2))
    return math.log(n) + scores.log_softmax(1)[:, 0].mean()


def statistics_infonce(
    net: nn.Module,
    fmap: torch.Tensor,
    rep: torch.Tensor,
    candidates: torch.Tensor,
    log_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Global or local MI term as InfoNCE, X and Y summed: each image's feature map scored with the
    representation of every row of its `candidates` (2B, N), its own first (`group_candidates`), the
    negatives weighted by `log_weights` (2B, N) when given. The map part is computed once per image."""
    h = net.embed(fmap)  # (2B, w) global or (2B, 25, 8w) local
    n = candidates.shape[1]
    scores = net.score(h.repeat_interleave(n, 0), rep[candidates.flatten()])  # (2B * N[, 25])
    scores = scores.view(len(h), n, *scores.shape[1:])
    if log_weights is None:
        return views_sum(infonce_mi, scores)
    return views_sum(infonce_mi, scores, log_weights)


L1_REDUCTIONS = ("sum", "mean")


def l1_distance(s_x: torch.Tensor, s_y: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """Eq. 6, E ||S_X - S_Y||_1 over the batch.

    reduce="sum": the norm as eq. 6 writes it, summed over the D coordinates. reduce="mean": also
    averaged over coordinates, as the earlier implementations' L1Loss did; that divides gamma by D
    (64). docs/studies/knobs.md measures the difference.
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
