"""Probe classifiers: a fresh report Table V classifier trained on frozen codes, scored on others."""
from __future__ import annotations

import torch
from torch import nn

from dismi.networks import Classifier, seeded


class Probe(nn.Module):
    """A classifier on standardised codes; the train codes' mean and spread belong to the probe."""

    def __init__(self, classifier: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.classifier = classifier
        self.register_buffer("mean", mean)  # (D,)
        self.register_buffer("std", std)    # (D,)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.classifier((codes - self.mean) / self.std)  # (N, n_classes) logits


def fit_probe(codes: torch.Tensor, labels: torch.Tensor, n_classes: int, *, epochs: int, lr: float,
              batch_size: int, generator: torch.Generator) -> Probe:
    """Train a fresh classifier with Adam and cross-entropy on (N, D) codes and (N,) class labels.

    Runs on the codes' device; `generator` (CPU) draws the initial weights and the batch order.
    """
    # Standardised inputs make one learning rate fit codes of any scale; a constant
    # dimension (std 0) becomes 0 rather than NaN.
    std = codes.std(dim=0, unbiased=False).clamp_min(1e-6)
    classifier = seeded(lambda: Classifier(codes.shape[1], n_classes), generator)
    probe = Probe(classifier, codes.mean(dim=0), std).to(codes.device)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()  # on logits: the classifier applies no softmax of its own
    probe.train()
    for _ in range(epochs):
        order = torch.randperm(len(codes), generator=generator).to(codes.device)
        for batch in order.split(batch_size):
            if len(batch) < 2:
                continue  # BatchNorm cannot normalise a single sample
            opt.zero_grad(set_to_none=True)
            loss_fn(probe(codes[batch]), labels[batch]).backward()
            opt.step()
    return probe.eval()


@torch.no_grad()
def probe_accuracy(probe: Probe, codes: torch.Tensor, labels: torch.Tensor, batch_size: int = 8192) -> float:
    """Fraction (0..1) of (N, D) codes whose predicted class equals the (N,) label."""
    probe.eval()
    correct = sum(int((probe(c).argmax(dim=1) == y).sum())
                  for c, y in zip(codes.split(batch_size), labels.split(batch_size)))
    return correct / len(codes)
