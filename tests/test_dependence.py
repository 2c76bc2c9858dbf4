"""Fresh critics on frozen (S, E) codes: they must see a planted dependence and see none where there is none."""

import math

import numpy as np
import pytest

from dismi.eval.dependence import CHANCE_LOSS, CRITICS, calibration, critic_losses, implied_jsd

KW = dict(epochs=8, lr=1e-3, batch_size=128, seed=0)


def _codes(n, seed, dependent):
    """S: 8 dims of noise; E: 8 dims, a noisy copy of S's first 4 when `dependent`, else fresh noise."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 8)).astype(np.float32)
    e = rng.normal(size=(n, 8)).astype(np.float32)
    if dependent:
        e[:, :4] = s[:, :4] + 0.1 * e[:, :4]
    return s, e


def _split(dependent, seed=0):
    s, e = _codes(3000, seed, dependent)
    return s[:2500], e[:2500], s[2500:], e[2500:]


def test_implied_jsd_is_zero_at_chance_and_ln2_at_a_perfect_critic():
    assert implied_jsd(CHANCE_LOSS) == pytest.approx(0.0, abs=1e-12)
    assert implied_jsd(0.0) == pytest.approx(math.log(2))


@pytest.mark.parametrize("kind", CRITICS)
def test_a_critic_sees_a_planted_dependence_and_not_its_calibration(kind):
    """Mistakes caught: a critic that never learns (scores chance on dependent codes: the earlier
    implementations' blind classifiers), and a measure that 'finds' dependence in independent codes
    (shuffling bug, train/test leak)."""
    dependent, independent = _split(True), _split(False, seed=1)
    got = critic_losses([dependent, calibration(*dependent, seed=0), independent], kind, **KW)
    assert got[0] < 0.8, got  # far below 2 ln 2 = 1.386
    assert abs(got[1] - CHANCE_LOSS) < 0.08, got  # E shuffled across images
    assert abs(got[2] - CHANCE_LOSS) < 0.08, got


def test_grouped_critics_train_each_pair_as_alone():
    """One bank for several (S, E) pairs must not mix them: each group's loss is the one it gets alone."""
    pairs = [_split(True), _split(False, seed=1)]
    together = critic_losses(pairs, "paper", **(KW | {"epochs": 1}))
    alone = [critic_losses([p], "paper", **(KW | {"epochs": 1}))[0] for p in pairs]
    assert together == pytest.approx(alone, abs=2e-3)
