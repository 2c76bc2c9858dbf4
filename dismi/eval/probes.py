"""Probe classifiers: fresh report Table V classifiers trained on frozen codes, scored on others.

Every probe of a run is trained in one bank (dismi.model.networks.ClassifierBank): G groups of codes of the
same images (the snapshots of an encoder, or S and E), K classifiers per group (one per factor), all
updated by the same minibatches. The classifiers share no parameter, so each gets the updates it would
get trained alone with that minibatch order, in a few batched ops per step instead of G * K times as
many small ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from dismi.model.networks import Classifier, ClassifierBank, seeded


class ProbeBank(nn.Module):
    """G * K classifiers on standardised codes; group g's K classifiers read group g's codes.

    The train codes' mean and spread belong to the probes (one per group), as the classifiers' weights.
    """

    def __init__(self, bank: ClassifierBank, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.bank = bank
        self.groups = len(mean)
        self.register_buffer("mean", mean)  # (G, D)
        self.register_buffer("std", std)  # (G, D)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """(G, B, D) codes -> (B, G * K, C) logits, classifier g * K + k reading group g."""
        g, b, d = codes.shape
        z = (codes - self.mean[:, None]) / self.std[:, None]  # (G, B, D)
        w1 = self.bank.w1.view(g, -1, d)  # (G, K * H, D)
        x = torch.baddbmm(self.bank.b1.view(g, 1, -1), z, w1.transpose(1, 2))  # (G, B, K * H)
        return self.bank.head(x.transpose(0, 1).reshape(b, -1))


def fit_probes(
    codes: torch.Tensor,
    labels: torch.Tensor,
    n_classes: Sequence[int],
    hidden: Sequence[int],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    on_epoch: Callable[[int], None] | None = None,
) -> ProbeBank:
    """Train fresh classifiers with Adam and cross-entropy on (G, N, D) codes (G groups of codes of the
    same N images) and (N, K) class labels: classifier k of each group has n_classes[k] outputs and
    hidden[k] units per hidden layer. Returns the bank in eval mode.

    Every group starts from the same initial weights, drawn from `generator` (CPU) as K Classifier
    modules in turn, and every group sees the same minibatch order (drawn next): so a group's probes are
    those `fit_probes` trains for that group alone. Runs on the codes' device. `on_epoch(e)` is called
    after epoch e (1-based), for progress.
    """
    n_groups = len(codes)
    # Standardised inputs make one learning rate fit codes of any scale; a constant
    # dimension (std 0) becomes 0 rather than NaN.
    mean, std = codes.mean(dim=1), codes.std(dim=1, unbiased=False).clamp_min(1e-6)  # (G, D)
    classifiers = [
        seeded(lambda: Classifier(codes.shape[2], n, hidden=h), generator) for n, h in zip(n_classes, hidden)
    ]
    probes = ProbeBank(ClassifierBank.from_classifiers(classifiers * n_groups), mean, std).to(codes.device)
    opt = torch.optim.Adam(probes.parameters(), lr=lr, fused=codes.device.type in ("cpu", "cuda"))
    probes.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(codes.shape[1], generator=generator).to(codes.device)
        for batch in order.split(batch_size):
            if len(batch) < 2:
                continue  # BatchNorm cannot normalise a single sample
            opt.zero_grad(set_to_none=True)
            bank_loss(probes, codes[:, batch], labels[batch]).backward()
            opt.step()
        if on_epoch is not None:
            on_epoch(epoch)
    return probes.eval()


def bank_loss(probes: ProbeBank, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each classifier's mean cross-entropy on (G, B, D) codes with (B, K) labels, summed over the
    classifiers: the sum's gradient reaches each classifier as its own loss's would."""
    logits = probes(codes)  # (B, G * K, C)
    targets = labels.repeat(1, probes.groups)  # (B, G * K): classifier g * K + k learns column k
    ce = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return ce.view(len(labels), -1).mean(0).sum()


@torch.no_grad()
def probe_accuracy(
    probes: ProbeBank, codes: torch.Tensor, labels: torch.Tensor, batch_size: int = 8192
) -> torch.Tensor:
    """(G, K) fraction (0..1) of each group's (G, N, D) codes whose class, predicted by that group's
    classifier k, equals column k of the (N, K) labels."""
    probes.eval()
    correct = torch.zeros(probes.groups * labels.shape[1], dtype=torch.long, device=codes.device)
    for start in range(0, codes.shape[1], batch_size):
        y = labels[start : start + batch_size].repeat(1, probes.groups)  # (n, G * K)
        correct += (probes(codes[:, start : start + batch_size]).argmax(dim=2) == y).sum(dim=0)
    return (correct.double() / codes.shape[1]).view(probes.groups, -1)
