"""MIG (Chen et al., NeurIPS 2018): the mutual-information gap, as google-research/disentanglement_lib's
`evaluation/metrics/mig.py` computes it: each code dimension discretised into histogram bins, its mutual
information with each factor (scikit-learn's `mutual_info_score`, nats), and per factor the gap between
the two most informative dimensions over the factor's entropy.

Pure core: `discretise`, `mutual_information`, `gap`. The bins' edges are fitted on the train split's
codes and applied to the test split's, as the probes are fitted on one and scored on the other.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import mutual_info_score


def bin_edges(codes: np.ndarray, bins: int) -> list[np.ndarray]:
    """Per dimension of (N, D) codes, the inner edges of `bins` equal-width bins over its range."""
    return [np.histogram(codes[:, d], bins)[1][1:-1] for d in range(codes.shape[1])]


def discretise(codes: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """(N, D) int bin indices of (N, D) codes, values outside the fitted range in the end bins."""
    return np.stack([np.digitize(codes[:, d], e) for d, e in enumerate(edges)], axis=1)


def mutual_information(discrete: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(D, K) mutual information in nats between each discretised code dimension and each factor."""
    return np.array(
        [
            [mutual_info_score(classes[:, k], discrete[:, d]) for k in range(classes.shape[1])]
            for d in range(discrete.shape[1])
        ]
    )


def factor_entropy(classes: np.ndarray) -> np.ndarray:
    """(K,) entropy in nats of each factor's classes in the sample."""
    return np.array([mutual_info_score(classes[:, k], classes[:, k]) for k in range(classes.shape[1])])


def gap(mi: np.ndarray, entropies: np.ndarray) -> np.ndarray:
    """(K,) per factor, (largest - second largest MI over the code dimensions) / the factor's entropy."""
    top = np.sort(mi, axis=0)[::-1]  # (D, K), most informative first
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    return np.divide(top[0] - second, entropies, out=np.zeros_like(entropies), where=entropies > 0)


def mig(train: np.ndarray, test: np.ndarray, test_classes: np.ndarray, *, bins: int) -> dict:
    """{"mig" (mean gap), "gap" (K,), "mutual_information" (D, K)} of the test codes, bins fitted on train."""
    discrete = discretise(test, bin_edges(train, bins))
    mi = mutual_information(discrete, test_classes)
    per_factor = gap(mi, factor_entropy(test_classes))
    return {"mig": float(per_factor.mean()), "gap": per_factor, "mutual_information": mi}
