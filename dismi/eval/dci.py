"""DCI (Eastwood & Williams, ICLR 2018): disentanglement, completeness and informativeness of a code, as
google-research/disentanglement_lib's `evaluation/metrics/dci.py` defines them. The per-factor
predictors are scikit-learn's extremely randomised trees (a random forest whose splits draw their
thresholds at random) with every dimension a candidate at each split, and their impurity importances:
with the usual sqrt(D) candidates, a split that did not see the dimension holding a factor splits on
another, and importance leaks to dimensions that hold nothing of it (docs/standard_metrics.md). Random
thresholds keep D candidates about as cheap as sqrt(D) sorted ones.

Pure core: `importance_matrix` (codes x factors) -> `disentanglement`, `completeness` (entropies with the
reference's bases), and `block_shares` (each factor's importance carried by a block of code dimensions:
S or E). `dci` fits the forests: on the train split's codes, scored on the test split's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import entropy
from sklearn.ensemble import ExtraTreesClassifier

EPS = 1e-11  # the reference's: keeps a zero importance from making an entropy undefined


def disentanglement_per_code(importance: np.ndarray) -> np.ndarray:
    """(D,) 1 - H(factors | code d), the entropy of code d's importances over the K factors in base K."""
    return 1.0 - entropy(importance.T + EPS, base=importance.shape[1])


def disentanglement(importance: np.ndarray) -> float:
    """Per-code disentanglement weighted by each code's share of the total importance."""
    per_code = disentanglement_per_code(importance)
    if importance.sum() == 0.0:
        return 0.0
    weights = importance.sum(axis=1) / importance.sum()
    return float(np.sum(per_code * weights))


def completeness_per_factor(importance: np.ndarray) -> np.ndarray:
    """(K,) 1 - H(codes | factor k), the entropy of factor k's importances over the D codes in base D."""
    return 1.0 - entropy(importance + EPS, base=importance.shape[0])


def completeness(importance: np.ndarray) -> float:
    """Per-factor completeness weighted by each factor's share of the total importance."""
    per_factor = completeness_per_factor(importance)
    if importance.sum() == 0.0:
        return 0.0
    weights = importance.sum(axis=0) / importance.sum()
    return float(np.sum(per_factor * weights))


def block_shares(importance: np.ndarray, blocks: Sequence[slice]) -> np.ndarray:
    """(len(blocks), K): for each factor, the share of its importance carried by each block of code
    dimensions (rows of `importance`); each column sums to 1 when the blocks cover every dimension."""
    totals = importance.sum(axis=0)  # (K,)
    shares = np.stack([importance[block].sum(axis=0) for block in blocks])  # (blocks, K)
    return np.divide(shares, totals, out=np.zeros_like(shares), where=totals > 0)


def fit_factor(
    train: np.ndarray,
    y_train: np.ndarray,
    test: np.ndarray,
    y_test: np.ndarray,
    *,
    trees: int,
    seed: int,
    jobs: int = 1,
) -> tuple[np.ndarray, float]:
    """One factor: a forest on the train codes -> ((D,) impurity importances, held-out accuracy).
    The same for any `jobs` (threads): each tree draws from its own seed."""
    forest = ExtraTreesClassifier(n_estimators=trees, max_features=None, random_state=seed, n_jobs=jobs)
    forest.fit(train, y_train)
    return np.abs(forest.feature_importances_), float((forest.predict(test) == y_test).mean())


def importance_matrix(
    train: np.ndarray,
    y_train: np.ndarray,
    test: np.ndarray,
    y_test: np.ndarray,
    *,
    trees: int,
    seed: int,
    jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """(D, K) importances of each code dimension for each factor, and (K,) held-out accuracies
    (informativeness per factor): one forest per factor, fitted on (N, D) train codes with (N, K) classes."""
    per_factor = [
        fit_factor(train, y_train[:, k], test, y_test[:, k], trees=trees, seed=seed, jobs=jobs)
        for k in range(y_train.shape[1])
    ]
    return np.stack([imp for imp, _ in per_factor], axis=1), np.array([acc for _, acc in per_factor])


def dci(
    train: np.ndarray,
    y_train: np.ndarray,
    test: np.ndarray,
    y_test: np.ndarray,
    *,
    trees: int,
    seed: int,
    jobs: int = 1,
) -> dict:
    """{"disentanglement", "completeness", "informativeness" (mean held-out accuracy), "importance" (D, K),
    "accuracy" (K,)} of one code."""
    importance, accuracy = importance_matrix(train, y_train, test, y_test, trees=trees, seed=seed, jobs=jobs)
    return {
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
        "informativeness": float(accuracy.mean()),
        "importance": importance,
        "accuracy": accuracy,
    }
