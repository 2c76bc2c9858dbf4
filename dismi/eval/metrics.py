"""How the paper judges a representation: held-out probe accuracy, distance to ideal, retrieval.

Each metric (disentanglement_lib style) takes `(codes: Codes, settings: EvalSettings)` and returns
a flat dict of floats keyed by factor (plus `distance_to_ideal` for the probes). They sit on pure
array functions (`distance_to_ideal`, `nearest_neighbours`, `retrieval_precision`) that tests and
notebooks can call directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dismi.data.factors import FACTORS, SIZES, ideal_accuracy
from dismi.data.results import check_representation, probe
from dismi.eval import dci, mig
from dismi.eval.probes import fit_probes, probe_accuracy
from dismi.util.errors import DismiError


@dataclass(frozen=True)
class Codes:
    """One representation (S or E) of the train and test images, with the images' factor classes."""

    representation: str  # "shared" or "exclusive"
    train: np.ndarray  # (N_train, D) float32
    train_classes: np.ndarray  # (N_train, 6) int64 class indices
    test: np.ndarray  # (N_test, D) float32
    test_classes: np.ndarray  # (N_test, 6) int64
    n_values: tuple[int, ...]  # distinct values per factor in the data: chance is 1 / n

    def __post_init__(self):
        check_representation(self.representation)
        if len(self.train) != len(self.train_classes) or len(self.test) != len(self.test_classes):
            raise ValueError("codes and classes must have one row per image")


@dataclass(frozen=True)
class EvalSettings:
    seed: int
    probe_epochs: int
    probe_lr: float
    probe_batch_size: int
    retrieval_k: int
    retrieval_queries: int
    device: str = "cpu"
    critic_epochs: int = 10
    dci_train_images: int = 10000
    dci_trees: int = 30
    mig_bins: int = 20
    jobs: int = 1  # CPU threads of the forests (the run's share of the cores): the figures do not depend on it


# ---- pure cores ---------------------------------------------------------------------------


def distance_to_ideal(accuracies: Mapping[str, float], representation: str, n_values: Sequence[int]) -> float:
    """Paper Table 3: sum over the six factors of |accuracy - ideal|, accuracies as fractions."""
    return float(sum(abs(accuracies[f] - ideal_accuracy(f, representation, n)) for f, n in zip(FACTORS, n_values)))


def nearest_neighbours(codes: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) rows of `codes` nearest (Euclidean) to each query row, the query itself excluded.

    Nearest first; equal distances keep the lower row first, so results are reproducible.
    """
    n = len(codes)
    if not 1 <= k <= n - 1:
        raise DismiError(f"retrieval_k={k} needs 1 <= k <= {n - 1} (the other test images): lower retrieval_k")
    c = np.asarray(codes, dtype=np.float64)
    sq = (c**2).sum(axis=1)
    out = np.empty((len(queries), k), dtype=np.int64)
    # Chunked so the (chunk, N) distance matrix stays small whatever the number of queries.
    for start in range(0, len(queries), 256):
        q = np.asarray(queries[start : start + 256])
        d2 = sq[q][:, None] - 2.0 * c[q] @ c.T + sq[None, :]  # (chunk, N)
        d2[np.arange(len(q)), q] = np.inf
        out[start : start + len(q)] = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return out


def retrieval_precision(classes: np.ndarray, queries: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """(6,) per factor, the fraction of (query, neighbour) pairs where the neighbour shares the query's value."""
    same = classes[neighbours] == classes[queries][:, None, :]  # (Q, k, 6)
    return same.mean(axis=(0, 1))


def choose_queries(n_test: int, n_queries: int, seed: int) -> np.ndarray:
    """Up to `n_queries` distinct test rows, in a seeded random order (the first ones are shown in figures)."""
    return np.random.default_rng(seed).choice(n_test, size=min(n_queries, n_test), replace=False)


# ---- metrics: one shared signature, flat dicts ----------------------------------------------


def probe_metrics(
    codes: Sequence[Codes], settings: EvalSettings, probe_name: str, on_epoch: Callable[[int], None] | None = None
) -> list[dict[str, float]]:
    """For each of `codes` (representations of the same images: snapshots, S and E), held-out accuracy
    per factor of fresh classifiers of kind `probe_name` (dismi.data.results.PROBES), and the distance to ideal.

    Codes of one size train as one bank (dismi.eval.probes): each one's probes start from the weights and
    see the minibatches they would alone, so the figures are `wide_probe_metric`'s, up to float rounding.
    `on_epoch(e)` is called after each epoch of each bank, for progress.
    """
    if not codes:
        return []
    first = codes[0]
    if any(
        not (
            np.array_equal(c.train_classes, first.train_classes) and np.array_equal(c.test_classes, first.test_classes)
        )
        for c in codes
    ):
        raise ValueError("probe_metrics needs codes of the same train and test images")
    device = torch.device(settings.device)
    y_train = torch.as_tensor(first.train_classes, device=device)
    y_test = torch.as_tensor(first.test_classes, device=device)
    # Official class count even on a reduced grid: absent classes are simply never predicted.
    hidden = [probe(probe_name).hidden(n) for n in SIZES]
    out: list[dict[str, float] | None] = [None] * len(codes)
    for dim in sorted({c.train.shape[1] for c in codes}):
        group = [i for i, c in enumerate(codes) if c.train.shape[1] == dim]

        def stack(split: str) -> torch.Tensor:
            return torch.as_tensor(
                np.stack([getattr(codes[i], split) for i in group]), dtype=torch.float32, device=device
            )  # (G, N, D)

        probes = fit_probes(
            stack("train"),
            y_train,
            SIZES,
            hidden,
            epochs=settings.probe_epochs,
            lr=settings.probe_lr,
            batch_size=settings.probe_batch_size,
            generator=torch.Generator().manual_seed(settings.seed),
            on_epoch=on_epoch,
        )
        for i, acc in zip(group, probe_accuracy(probes, stack("test"), y_test).tolist()):
            figures = dict(zip(FACTORS, acc))
            figures["distance_to_ideal"] = distance_to_ideal(figures, codes[i].representation, codes[i].n_values)
            out[i] = figures
    return out


def wide_probe_metric(codes: Codes, settings: EvalSettings) -> dict[str, float]:
    """Held-out accuracy of fresh wide (2x256) classifiers per factor, and the distance to ideal."""
    return probe_metrics([codes], settings, "wide")[0]


def paper_probe_metric(codes: Codes, settings: EvalSettings) -> dict[str, float]:
    """The same with the paper's Table V classifiers (hidden layers as wide as the number of classes)."""
    return probe_metrics([codes], settings, "paper")[0]


def retrieval_metric(codes: Codes, settings: EvalSettings) -> dict[str, float]:
    """Per factor, the fraction of each test query's k nearest test neighbours sharing its value."""
    queries = choose_queries(len(codes.test), settings.retrieval_queries, settings.seed)
    neighbours = nearest_neighbours(codes.test, queries, settings.retrieval_k)
    return dict(zip(FACTORS, map(float, retrieval_precision(codes.test_classes, queries, neighbours))))


def retrieval_examples(codes: Codes, settings: EvalSettings, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` of retrieval_metric's queries (test rows, (n,)) and their neighbours (n, k), for figures."""
    queries = choose_queries(len(codes.test), settings.retrieval_queries, settings.seed)[:n]
    return queries, nearest_neighbours(codes.test, queries, settings.retrieval_k)


STANDARD_STEPS = 4  # DCI's forests on [S, E], on S, on E; MIG


def standard_metrics(
    shared: Codes, exclusive: Codes, settings: EvalSettings, on_step: Callable[[int], None] | None = None
) -> tuple[dict, dict]:
    """The field's standard figures on the held-out split, estimators fitted on `dci_train_images` train
    images (a seeded draw) -> (figures for evaluate.json, the importance matrix for the figure):

    - DCI over [S, E]: disentanglement, completeness, informativeness (mean held-out forest accuracy);
    - importance_share: per factor, the share of its DCI importance carried by S and by E (ideal: hues all
      in E, scale, shape and orientation all in S). Over [S, E] a forest needs only one copy of a factor,
      so E's leak of what S holds perfectly stays invisible here: hence
    - informativeness of S alone, of E alone and of [S, E] per factor (held-out forest accuracy);
    - MIG over [S, E] (bins fitted on the train codes), and each factor's gap.

    `on_step(k)` is called after each of the STANDARD_STEPS steps, for progress.
    """
    done = iter(range(1, STANDARD_STEPS + 1))

    def step() -> None:
        if on_step is not None:
            on_step(next(done))

    if not (
        np.array_equal(shared.train_classes, exclusive.train_classes)
        and np.array_equal(shared.test_classes, exclusive.test_classes)
    ):
        raise ValueError("standard_metrics needs S and E of the same images")
    rng = np.random.default_rng(settings.seed)
    n = len(shared.train)
    rows = np.sort(rng.choice(n, size=min(settings.dci_train_images, n), replace=False))
    y_train, y_test = shared.train_classes[rows], shared.test_classes
    joint_train = np.concatenate([shared.train[rows], exclusive.train[rows]], axis=1)  # (N, D_S + D_E)
    joint_test = np.concatenate([shared.test, exclusive.test], axis=1)
    fit = dict(trees=settings.dci_trees, seed=settings.seed, jobs=settings.jobs)
    joint = dci.dci(joint_train, y_train, joint_test, y_test, **fit)
    step()
    d_s = shared.train.shape[1]
    shares = dci.block_shares(joint["importance"], [slice(0, d_s), slice(d_s, None)])  # (2, K)
    alone = {}
    for c in (shared, exclusive):
        alone[c.representation] = dci.importance_matrix(c.train[rows], y_train, c.test, y_test, **fit)[1]
        step()
    gaps = mig.mig(joint_train, joint_test, y_test, bins=settings.mig_bins)
    step()
    figures = {
        "dci": {k: joint[k] for k in ("disentanglement", "completeness", "informativeness")},
        "importance_share": {
            rep: dict(zip(FACTORS, map(float, share))) for rep, share in zip(("shared", "exclusive"), shares)
        },
        "informativeness": {
            "joint": dict(zip(FACTORS, map(float, joint["accuracy"]))),
            **{rep: dict(zip(FACTORS, map(float, acc))) for rep, acc in alone.items()},
        },
        "mig": {"mig": gaps["mig"], **dict(zip(FACTORS, map(float, gaps["gap"])))},
    }
    importance = {
        "factors": list(FACTORS),
        "shared_dim": d_s,
        "exclusive_dim": exclusive.train.shape[1],
        "importance": joint["importance"].tolist(),  # (D_S + D_E, 6): S's dimensions first
    }
    return figures, importance
