"""Independence terms of the exclusive stage: each charges E for what it shares with S.

A term is a module of ExclusiveModel (dismi.model.terms.base.Term): built from its weight, it gives the
encoder's loss for a batch and, when it has networks of its own (the adversary's discriminator), their loss,
which the trainer minimises with an optimizer of their own before the encoder's step. TERMS names each term
by the trainer argument that carries its weight. A new term: its module here, its line in TERMS, its knob
in stages/params.py.
"""

from __future__ import annotations

from dismi.model.terms.adversary import Adversary
from dismi.model.terms.base import Term
from dismi.model.terms.bottleneck import Bottleneck
from dismi.model.terms.sliced import SlicedMI

TERMS: dict[str, type[Term]] = {"lambda_adv": Adversary, "beta_kl_ex": Bottleneck, "lambda_slice": SlicedMI}

__all__ = ["TERMS", "Adversary", "Bottleneck", "SlicedMI", "Term"]
