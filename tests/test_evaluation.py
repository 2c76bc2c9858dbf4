"""The metrics' pure cores on arrays whose answers are known: probes, distance to ideal, retrieval."""

import numpy as np
import pytest
import torch

from dismi.data.factors import FACTORS, SIZES, chance_level, ideal_accuracy, index_to_classes
from dismi.data.results import Results
from dismi.eval.metrics import (
    Codes,
    EvalSettings,
    choose_queries,
    distance_to_ideal,
    nearest_neighbours,
    retrieval_examples,
    retrieval_metric,
    retrieval_precision,
    wide_probe_metric,
)
from dismi.eval.probes import bank_loss, fit_probes, probe_accuracy
from dismi.eval.published import PAPER_ACCURACY, PAPER_DISTANCE, REPORT_ACCURACY, REPORT_DISTANCE
from dismi.eval.tables import evaluation_tables
from dismi.model.networks import Classifier, seeded
from dismi.util.errors import DismiError

OFFICIAL = list(SIZES)
SETTINGS = EvalSettings(
    seed=0, probe_epochs=15, probe_lr=1e-2, probe_batch_size=128, retrieval_k=5, retrieval_queries=200
)


def _classes(n, seed):
    """(n, 6) class tuples drawn uniformly from the official grid."""
    return index_to_classes(np.random.default_rng(seed).choice(int(np.prod(SIZES)), size=n, replace=False))


def _one_hot(classes, factors=FACTORS):
    """The true factors as codes: one one-hot block per listed factor."""
    return np.concatenate(
        [np.eye(SIZES[FACTORS.index(f)], dtype=np.float32)[classes[:, FACTORS.index(f)]] for f in factors], axis=1
    )


def _codes(representation, train, test, n_train_classes, n_test_classes):
    return Codes(representation, train, n_train_classes, test, n_test_classes, tuple(OFFICIAL))


@pytest.fixture(scope="module")
def split():
    classes = _classes(1500, seed=1)
    return classes[:1200], classes[1200:]


# ---- probes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def identity_probe(split):
    train, test = split
    return wide_probe_metric(_codes("shared", _one_hot(train), _one_hot(test), train, test), SETTINGS)


def test_identity_codes_reach_near_full_accuracy_on_every_factor(identity_probe):
    for f in FACTORS:
        assert identity_probe[f] > 0.95, (f, identity_probe)


def test_probe_on_shared_factors_only_scores_ideal_shared(split):
    train, test = split
    shared = ("scale", "shape", "orientation")
    acc = wide_probe_metric(_codes("shared", _one_hot(train, shared), _one_hot(test, shared), train, test), SETTINGS)
    for f in shared:
        assert acc[f] > 0.95, (f, acc)
    for f in ("floor_hue", "wall_hue", "object_hue"):
        assert abs(acc[f] - 0.1) < 0.07, (f, acc)
    assert acc["distance_to_ideal"] < 0.25


@pytest.mark.parametrize("kind", ["random", "constant"])
def test_uninformative_codes_sit_near_chance(split, kind):
    train, test = split
    rng = np.random.default_rng(2)
    make = {
        "random": lambda n: rng.normal(size=(n, 16)).astype(np.float32),
        "constant": lambda n: np.full((n, 16), 3.0, dtype=np.float32),
    }[kind]
    acc = wide_probe_metric(
        _codes("exclusive", make(len(train)), make(len(test)), train, test),
        EvalSettings(**{**SETTINGS.__dict__, "probe_epochs": 5}),
    )
    for f, n in zip(FACTORS, SIZES):
        assert abs(acc[f] - 1 / n) < 0.07, (kind, f, acc)
        assert np.isfinite(acc[f])


def test_probe_is_reproducible_from_its_generator_and_leaves_global_rng_alone(split):
    train, _ = split
    x = torch.as_tensor(
        _one_hot(train, ("shape",)) + np.random.default_rng(3).normal(size=(len(train), 4)) * 0.5, dtype=torch.float32
    )
    y = torch.as_tensor(train[:, FACTORS.index("shape")])[:, None]
    state = torch.get_rng_state()
    probes = [
        fit_probes(x[None], y, [4], [256], epochs=2, lr=1e-2, batch_size=64, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(probes[0].state_dict().values(), probes[1].state_dict().values()):
        assert torch.equal(a, b)
    assert 0.0 <= float(probe_accuracy(probes[0], x[None], y)) <= 1.0


def _bank_problem(n=600, seed=0):
    """Three groups of codes of the same n images: the factors one-hot (every factor readable), the
    same faintly under noise, and noise alone; as probes get them, (3, n, 57), with (n, 6) labels."""
    classes = _classes(n, seed=10 + seed)
    noise = np.random.default_rng(seed).normal(size=(3, n, sum(SIZES))).astype(np.float32)
    codes = np.stack([_one_hot(classes), 0.3 * _one_hot(classes) + noise[1], noise[2]])
    return torch.as_tensor(codes) * torch.tensor([1.0, 5.0, 0.1])[:, None, None], torch.as_tensor(classes)


@pytest.mark.parametrize("hidden", [lambda n: 256, lambda n: n], ids=["wide", "paper"])
def test_a_bank_of_groups_trains_each_group_as_alone(hidden):
    """Batching snapshots into one bank must not mix them: the gradient group g's classifiers get
    from the bank's loss is the one they get trained alone (same initial weights, same minibatch),
    so Adam (elementwise) gives them the same updates; and trained, each group reads its own codes."""
    codes, labels = _bank_problem()
    kw = dict(n_classes=SIZES, hidden=[hidden(n) for n in SIZES], lr=1e-2, batch_size=64)
    bank = fit_probes(codes, labels, epochs=0, generator=torch.Generator().manual_seed(3), **kw).train()
    bank_loss(bank, codes[:, :64], labels[:64]).backward()
    for g in range(3):
        alone = fit_probes(codes[g : g + 1], labels, epochs=0, generator=torch.Generator().manual_seed(3), **kw).train()
        bank_loss(alone, codes[g : g + 1, :64], labels[:64]).backward()
        for name in ("w2", "b2", "w3", "b3"):  # (G * K, ...): group g's K blocks
            torch.testing.assert_close(
                getattr(alone.bank, name).grad, getattr(bank.bank, name).grad[6 * g : 6 * (g + 1)], rtol=1e-5, atol=1e-7
            )
        rows = bank.bank.w1.shape[0] // 3  # (G * K * H, D): group g's rows
        torch.testing.assert_close(
            alone.bank.w1.grad, bank.bank.w1.grad[rows * g : rows * (g + 1)], rtol=1e-5, atol=1e-7
        )
    held_out, held_out_labels = _bank_problem(seed=1)  # other images, the same three kinds of code
    bank = fit_probes(codes, labels, epochs=20, generator=torch.Generator().manual_seed(3), **kw)
    acc = probe_accuracy(bank, held_out, held_out_labels)  # (3, 6)
    chance = 1 / torch.tensor(SIZES, dtype=torch.float64)
    assert (acc[0] > 0.9).all() and (acc[2] < chance + 0.1).all(), acc


def test_a_bank_starts_from_the_classifiers_a_probe_would_be_built_from():
    """The bank's initial weights are K Table V Classifier modules drawn in turn from the generator:
    a probe changed nothing but how the classifiers are batched."""
    codes, labels = _bank_problem()
    bank = fit_probes(
        codes[:1],
        labels,
        SIZES,
        [256] * 6,
        epochs=0,
        lr=1e-2,
        batch_size=64,
        generator=torch.Generator().manual_seed(5),
    )
    gen = torch.Generator().manual_seed(5)
    classifiers = [seeded(lambda: Classifier(sum(SIZES), n, hidden=256), gen).eval() for n in SIZES]
    z = (codes[0, :50] - codes[0].mean(0)) / codes[0].std(0, unbiased=False)
    for k, c in enumerate(classifiers):
        torch.testing.assert_close(bank(codes[:1, :50])[:, k, : SIZES[k]], c(z), rtol=1e-5, atol=1e-5)


# ---- distance to ideal ---------------------------------------------------------------------


@pytest.mark.parametrize("rep", ["shared", "exclusive"])
def test_distance_is_zero_for_the_ideal_accuracies(rep):
    for n_values in (OFFICIAL, [4, 4, 4, 4, 4, 5]):
        ideal = {f: ideal_accuracy(f, rep, n) for f, n in zip(FACTORS, n_values)}
        assert distance_to_ideal(ideal, rep, n_values) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("source, published", [(PAPER_ACCURACY, PAPER_DISTANCE), (REPORT_ACCURACY, REPORT_DISTANCE)])
@pytest.mark.parametrize("rep", ["shared", "exclusive"])
def test_distance_matches_the_published_figures_within_their_rounding(source, published, rep):
    # Accuracies are published to 0.01% (half a unit: 5e-5 each, six of them) and the distance
    # to its last digit: from the rounded paper E figures the sum is 0.19543, published as 0.1955.
    decimals = len(f"{published[rep]}".split(".")[1])
    tolerance = 6 * 5e-5 + 0.5 * 10**-decimals
    assert distance_to_ideal(source[rep], rep, OFFICIAL) == pytest.approx(published[rep], abs=tolerance)


def test_paper_shared_distance_rounds_to_the_published_0_0020():
    assert round(distance_to_ideal(PAPER_ACCURACY["shared"], "shared", OFFICIAL), 4) == 0.0020


def test_distance_uses_the_datas_chance_level():
    acc = {f: 1.0 if f in ("scale", "shape", "orientation") else 0.1 for f in FACTORS}
    assert distance_to_ideal(acc, "shared", OFFICIAL) == pytest.approx(0.0)
    # On a grid with 5 hue values chance is 0.2, so 0.1 is 0.1 away, three times.
    assert distance_to_ideal(acc, "shared", [5, 5, 5, 8, 4, 15]) == pytest.approx(0.3)


# ---- retrieval -----------------------------------------------------------------------------


def test_nearest_neighbours_by_hand():
    codes = np.array([[0.0], [1.0], [3.0], [10.0], [1.0]])
    # Row 0: rows 1 and 4 tie at distance 1, the lower row first; the query itself never appears.
    nn = nearest_neighbours(codes, np.array([0, 3, 1]), k=2)
    assert nn.tolist() == [[1, 4], [2, 1], [4, 0]]


def test_retrieval_precision_by_hand():
    classes = np.zeros((4, 6), dtype=np.int64)
    classes[:, 0] = [0, 0, 1, 1]  # floor hue: rows 0,1 share, rows 2,3 share
    classes[:, 4] = [0, 1, 2, 3]  # shape: all differ
    queries = np.array([0, 2])
    neighbours = np.array([[1, 2], [3, 1]])  # each query: one same-floor neighbour, one other
    p = retrieval_precision(classes, queries, neighbours)
    assert p[0] == 0.5 and p[4] == 0.0 and p[1] == 1.0


def test_retrieval_by_shared_only_codes_finds_the_shared_factors():
    # Every (scale, shape, orientation) combination of a small set appears 6 times with random hues:
    # a query's 5 nearest codes are exactly its 5 twins.
    rng = np.random.default_rng(4)
    combos = np.stack([rng.integers(0, n, size=40) for n in (8, 4, 15)], axis=1)
    combos = np.unique(combos, axis=0)
    classes = np.zeros((len(combos) * 6, 6), dtype=np.int64)
    classes[:, 3:] = np.repeat(combos, 6, axis=0)
    classes[:, :3] = rng.integers(0, 10, size=(len(classes), 3))
    codes = _one_hot(classes, ("scale", "shape", "orientation"))
    r = retrieval_metric(Codes("shared", codes, classes, codes, classes, tuple(OFFICIAL)), SETTINGS)
    for f in ("scale", "shape", "orientation"):
        assert r[f] == 1.0
    for f in ("floor_hue", "wall_hue", "object_hue"):
        assert r[f] < 0.3


def test_retrieval_examples_are_the_metrics_first_queries():
    codes = np.random.default_rng(5).normal(size=(50, 3))
    classes = _classes(50, seed=6)
    c = Codes("exclusive", codes, classes, codes, classes, tuple(OFFICIAL))
    queries, neighbours = retrieval_examples(c, SETTINGS, n=4)
    all_queries = choose_queries(50, SETTINGS.retrieval_queries, SETTINGS.seed)
    assert queries.tolist() == all_queries[:4].tolist()
    assert neighbours.tolist() == nearest_neighbours(codes, all_queries, SETTINGS.retrieval_k)[:4].tolist()
    assert len(set(all_queries.tolist())) == 50  # capped at the number of test images, no repeats


def test_retrieval_k_must_leave_other_images():
    with pytest.raises(DismiError, match="retrieval_k=4"):
        nearest_neighbours(np.zeros((4, 2)), np.array([0]), k=4)


# ---- the Markdown table --------------------------------------------------------------------


def test_markdown_table_lists_every_factor_with_paper_and_report():
    acc = {f: 0.5 for f in FACTORS}
    paper = {f: 0.25 for f in FACTORS}
    results = Results(
        held_out={
            "wide": {"shared": {**acc, "distance_to_ideal": 1.234}, "exclusive": {**acc, "distance_to_ideal": 0.5}},
            "paper": {"shared": {**paper, "distance_to_ideal": 2.5}, "exclusive": {**paper, "distance_to_ideal": 0.75}},
        },
        online={"wide": {"shared": acc, "exclusive": acc}, "paper": {"shared": paper, "exclusive": paper}},
        retrieval={"shared": acc, "exclusive": acc},
    )
    md = evaluation_tables(results, OFFICIAL)
    for f, n in zip(FACTORS, OFFICIAL):
        assert f"| {f} | 25.00 | 50.00 | 25.00 | 50.00 |" in md  # held-out: S paper, S wide, E paper, E wide
        assert f"| {f} | 50.00 | 50.00 | {100 * chance_level(n):.2f} |" in md  # retrieval by S, by E, chance
    assert "| floor_hue | 25.00 | 50.00 | 25.00 | 50.00 | 10.00 | 100.00 | 10.00 | 9.96 | 95.10 | 10.28 | 77.74 |" in md
    assert "| distance to ideal | 2.5000 | 1.2340 | 0.7500 | 0.5000 |" in md and "0.1955" in md
    assert "| floor_hue | 25.00 | 50.00 | 25.00 | 50.00 |\n" in md  # the online table: paper and wide probes
    assert f"{100 * chance_level(15):.2f}" in md
