"""DCI and MIG (dismi.eval.dci, dismi.eval.mig) checked at both ends, as disentanglement_lib checks them:
codes that are the factors score near 1, random codes near 0, a factor copied into two dimensions scores
the completeness the definition gives, and the block shares put a planted factor where it lives."""

import math

import numpy as np
import pytest

from dismi.data.factors import FACTORS, SIZES
from dismi.eval import dci, mig
from dismi.eval.metrics import Codes, EvalSettings, standard_metrics

N_TRAIN, N_TEST = 3000, 1000
FIT = dict(trees=20, seed=0)


def _factors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n) for s in SIZES], axis=1)  # (n, 6) independent factors


@pytest.fixture(scope="module")
def classes():
    return _factors(N_TRAIN, 1), _factors(N_TEST, 2)


def test_codes_equal_to_the_factors_score_one(classes):
    y_train, y_test = classes
    got = dci.dci(y_train.astype(float), y_train, y_test.astype(float), y_test, **FIT)
    assert got["disentanglement"] > 0.99 and got["completeness"] > 0.99
    assert got["informativeness"] == pytest.approx(1.0)
    assert mig.mig(y_train.astype(float), y_test.astype(float), y_test, bins=20)["mig"] > 0.97


def test_random_codes_score_near_zero(classes):
    y_train, y_test = classes
    rng = np.random.default_rng(3)
    train, test = rng.normal(size=(N_TRAIN, 6)), rng.normal(size=(N_TEST, 6))
    got = dci.dci(train, y_train, test, y_test, **FIT)
    assert got["disentanglement"] < 0.1 and got["completeness"] < 0.1
    assert got["informativeness"] < 0.3  # chance: the mean of 1 / sizes is 0.14
    assert mig.mig(train, test, y_test, bins=20)["mig"] < 0.05


def test_a_factor_copied_into_two_dimensions_scores_the_completeness_of_an_even_split(classes):
    """1 - H(codes | factor) with the importance split evenly over two of D dimensions: 1 - ln 2 / ln D
    (entropy in base D, the reference's). Tolerance 0.03: the forest splits ties between the copies at random."""
    y_train, y_test = classes
    train, test = (np.repeat(y, 2, axis=1).astype(float) for y in (y_train, y_test))  # (n, 12): each factor twice
    got = dci.dci(train, y_train, test, y_test, **FIT)
    d = train.shape[1]
    assert got["completeness"] == pytest.approx(1 - math.log(2) / math.log(d), abs=0.03)
    assert got["disentanglement"] > 0.99  # each dimension still serves one factor
    assert mig.mig(train, test, y_test, bins=20)["mig"] < 0.02  # two equally informative dimensions: no gap


def test_the_importance_matrix_is_codes_by_factors_and_the_blocks_are_its_row_ranges(classes):
    """A transposed matrix, or a block share summed over the wrong dimensions, moves a planted factor."""
    y_train, y_test = classes
    rng = np.random.default_rng(4)

    def codes(y):  # 5 noise dims, then orientation in dim 5 and floor hue in dim 7, noise in 6
        out = rng.normal(size=(len(y), 8))
        out[:, 5], out[:, 7] = y[:, 5], y[:, 0]
        return out

    importance, accuracy = dci.importance_matrix(codes(y_train), y_train, codes(y_test), y_test, **FIT)
    assert importance.shape == (8, 6)
    col = importance / importance.sum(axis=0)
    assert col[5, 5] > 0.9 and col[7, 0] > 0.9
    shares = dci.block_shares(importance, [slice(0, 6), slice(6, None)])
    assert shares.shape == (2, 6) and np.allclose(shares.sum(axis=0), 1.0)
    assert shares[0, 5] > 0.9 and shares[1, 0] > 0.9  # orientation in the first block, floor hue in the second
    assert accuracy[0] > 0.99 and accuracy[5] > 0.99


def test_standard_metrics_put_each_factor_in_the_block_that_holds_it(classes):
    """S holds the shared factors, E the hues (plus a noisy copy of scale): the shares say so, and E alone
    still reads the scale it leaks."""
    y_train, y_test = classes
    rng = np.random.default_rng(5)

    def split(y):
        s = np.concatenate([y[:, 3:], rng.normal(size=(len(y), 3))], axis=1)  # (n, 6)
        e = np.concatenate([y[:, :3], y[:, 3:4] + 0.3 * rng.normal(size=(len(y), 1))], axis=1)  # (n, 4)
        return s.astype(np.float32), e.astype(np.float32)

    (s_tr, e_tr), (s_te, e_te) = split(y_train), split(y_test)
    n = tuple(SIZES)
    s = Codes("shared", s_tr, y_train, s_te, y_test, n)
    e = Codes("exclusive", e_tr, y_train, e_te, y_test, n)
    settings = EvalSettings(0, 1, 1e-3, 64, 3, 10, dci_train_images=2000, dci_trees=20, mig_bins=20)
    figures, importance = standard_metrics(s, e, settings)
    share = figures["importance_share"]
    for f in FACTORS[:3]:
        assert share["exclusive"][f] > 0.9 and figures["informativeness"]["exclusive"][f] > 0.99
    for f in FACTORS[3:]:
        assert share["shared"][f] > 0.8 and figures["informativeness"]["shared"][f] > 0.99
    assert figures["informativeness"]["exclusive"]["scale"] > 0.5  # the leak E alone shows
    assert np.array(importance["importance"]).shape == (10, 6) and importance["shared_dim"] == 6
    assert 0 < figures["mig"]["mig"] <= 1 and set(figures["mig"]) == {"mig", *FACTORS}
    again, _ = standard_metrics(s, e, settings)
    assert again == figures  # seeded: the same figures every time
