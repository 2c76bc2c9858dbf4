"""Probe classifiers: fresh report Table V classifiers trained on frozen codes, scored on others."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dismi.networks import CLASSIFIER_HIDDEN, Classifier, seeded


class Probe(nn.Module):
    """A classifier on standardised codes; the train codes' mean and spread belong to the probe."""

    def __init__(self, classifier: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.classifier = classifier
        self.register_buffer("mean", mean)  # (D,)
        self.register_buffer("std", std)    # (D,)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.classifier((codes - self.mean) / self.std)  # (N, n_classes) logits


def fit_probes(codes: torch.Tensor, labels: torch.Tensor, n_classes: Sequence[int], hidden: Sequence[int], *,
               epochs: int, lr: float, batch_size: int, generator: torch.Generator) -> list[Probe]:
    """Train one fresh classifier per label column with Adam and cross-entropy on (N, D) codes and
    (N, K) class labels; classifier k has n_classes[k] outputs and hidden[k] units per hidden layer.

    The K classifiers share nothing but the minibatch order, so training them in one loop (one
    summed loss, Adam's per-parameter updates) gives each the same updates as training it alone
    with that order, K times faster. Runs on the codes' device; `generator` (CPU) draws the
    initial weights and the batch order.
    """
    # Standardised inputs make one learning rate fit codes of any scale; a constant
    # dimension (std 0) becomes 0 rather than NaN.
    mean, std = codes.mean(dim=0), codes.std(dim=0, unbiased=False).clamp_min(1e-6)
    probes = nn.ModuleList(Probe(seeded(lambda: Classifier(codes.shape[1], n, hidden=h), generator), mean, std)
                           for n, h in zip(n_classes, hidden)).to(codes.device)
    opt = torch.optim.Adam(probes.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()  # on logits: the classifier applies no softmax of its own
    probes.train()
    for _ in range(epochs):
        order = torch.randperm(len(codes), generator=generator).to(codes.device)
        for batch in order.split(batch_size):
            if len(batch) < 2:
                continue  # BatchNorm cannot normalise a single sample
            opt.zero_grad(set_to_none=True)
            z = codes[batch]
            sum(loss_fn(p(z), labels[batch, k]) for k, p in enumerate(probes)).backward()
            opt.step()
    return [p.eval() for p in probes]


def fit_probe(codes: torch.Tensor, labels: torch.Tensor, n_classes: int, *, epochs: int, lr: float,
              batch_size: int, generator: torch.Generator, hidden: int = CLASSIFIER_HIDDEN) -> Probe:
    """One classifier on (N, D) codes and (N,) class labels: `fit_probes` with one column."""
    return fit_probes(codes, labels[:, None], [n_classes], [hidden], epochs=epochs, lr=lr,
                      batch_size=batch_size, generator=generator)[0]


@torch.no_grad()
def probe_accuracy(probe: Probe, codes: torch.Tensor, labels: torch.Tensor, batch_size: int = 8192) -> float:
    """Fraction (0..1) of (N, D) codes whose predicted class equals the (N,) label."""
    probe.eval()
    correct = sum(int((probe(c).argmax(dim=1) == y).sum())
                  for c, y in zip(codes.split(batch_size), labels.split(batch_size)))
    return correct / len(codes)
