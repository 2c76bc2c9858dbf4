"""Each loss on small hand-computed inputs, and the pairings that earlier implementations got wrong."""

import math

import pytest
import torch
from torch import nn

from dismi.model import losses
from dismi.model.networks import GlobalStatistics, LocalStatistics
from dismi.model.objectives import ExclusiveModel, SharedModel

LN2 = math.log(2)


def test_jsd_mi_matches_eq_2_by_hand():
    zeros = torch.zeros(4)
    assert losses.jsd_mi(zeros, zeros).item() == pytest.approx(-2 * LN2)
    t = torch.tensor([math.log(3)])
    # -log(1 + e^-T) - log(1 + e^T) at T = ln 3: -ln(4/3) - ln 4
    assert losses.jsd_mi(t, t).item() == pytest.approx(-math.log(4 / 3) - math.log(4))
    # a perfect critic (high on joint, low on marginal) approaches the bound 0
    assert losses.jsd_mi(torch.full((3,), 30.0), torch.full((3,), -30.0)).item() == pytest.approx(0, abs=1e-9)


def test_views_sum_adds_the_x_term_and_the_y_term():
    t = torch.tensor([1.0, 2.0, 10.0, 20.0])
    assert losses.views_sum(lambda a: a.max(), t).item() == 2.0 + 20.0


def test_partner_swaps_halves_only_when_switched():
    s = torch.arange(8.0).reshape(4, 2)  # rows: X0, X1, Y0, Y1
    assert losses.partner(s, True).tolist() == [[4, 5], [6, 7], [0, 1], [2, 3]]
    assert torch.equal(losses.partner(s, False), s)


def test_other_in_view_points_every_row_at_another_row_of_its_own_half():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        idx = losses.other_in_view(5, g, torch.device("cpu"))
        rows = torch.arange(10)
        assert (idx != rows).all()
        assert ((idx < 5) == (rows < 5)).all()
        assert sorted(idx.tolist()) == list(range(10))  # a permutation: every code used once


def test_partner_rows_point_every_row_at_its_pair_partner():
    assert losses.partner_rows(3, torch.device("cpu")).tolist() == [3, 4, 5, 0, 1, 2]


@pytest.mark.parametrize("net", [GlobalStatistics, LocalStatistics])
def test_with_partner_negatives_a_code_of_only_what_the_pair_shares_scores_no_information(net):
    # The mistake: negatives that are not the pair's other image, so that holding the shared factors in E
    # pays. A code equal across each pair makes every marginal sample a copy of its joint one, and
    # -softplus(-T) - softplus(T) <= -2 ln 2 for any T: no statistics network can score it above that.
    torch.manual_seed(0)
    n_pairs, channels, dim = 8, 6, 5
    stats = net(channels, dim, width=4)
    fmap = torch.randn(2 * n_pairs, channels, 5, 5)
    shared_only = torch.randn(n_pairs, dim).repeat(2, 1)  # X rows, then the same codes for their Y partners
    partner = losses.partner_rows(n_pairs, torch.device("cpu"))
    assert losses.statistics_mi(stats, fmap, shared_only, partner).item() <= -4 * math.log(2) + 1e-6
    # the bound is the pairing's, not the network's: with negatives from other pairs the same code scores
    # above it once the network has learnt to (a few steps of ascent on the estimate)
    batch = losses.other_in_view(n_pairs, torch.Generator().manual_seed(1), torch.device("cpu"))
    opt = torch.optim.Adam(stats.parameters(), lr=1e-2)
    for _ in range(50):
        opt.zero_grad()
        (-losses.statistics_mi(stats, fmap, shared_only, batch)).backward()
        opt.step()
    assert losses.statistics_mi(stats, fmap, shared_only, batch).item() > -4 * math.log(2) + 0.5
    assert losses.statistics_mi(stats, fmap, shared_only, partner).item() <= -4 * math.log(2) + 1e-6


def test_l1_distance_is_mean_absolute_difference():
    a, b = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, 2.0]])
    assert losses.l1_distance(a, b).item() == pytest.approx((1 + 4) / 2)


def test_classifier_loss_is_cross_entropy_on_logits_not_a_double_softmax():
    logits, target = torch.tensor([[0.0, math.log(3)]]), torch.tensor([1])
    assert losses.classifier_loss(logits, target).item() == pytest.approx(-math.log(3 / 4))
    # A confident right answer costs ~0; softmax-then-cross-entropy would still charge ~0.31.
    assert losses.classifier_loss(torch.tensor([[10.0, -10.0]]), torch.tensor([0])).item() < 1e-6


def test_discriminator_labels_shuffled_samples_real_and_joint_samples_fake():
    zeros = torch.zeros(3)
    assert losses.discriminator_loss(zeros, zeros).item() == pytest.approx(2 * LN2)
    t = torch.tensor([math.log(3)])
    assert losses.discriminator_loss(joint_logits=t, shuffled_logits=t).item() == pytest.approx(
        math.log(4) + math.log(4 / 3)
    )  # -log(1 - D(joint)) - log D(shuffled), D = 3/4
    high, low = torch.full((2,), 20.0), torch.full((2,), -20.0)
    assert losses.discriminator_loss(joint_logits=low, shuffled_logits=high).item() < 1e-6  # right
    assert losses.discriminator_loss(joint_logits=high, shuffled_logits=low).item() > 30  # backwards


def test_encoder_adversarial_loss_rewards_joint_samples_that_look_shuffled():
    assert losses.encoder_adversarial_loss(torch.zeros(2)).item() == pytest.approx(LN2)
    assert losses.encoder_adversarial_loss(torch.full((2,), 20.0)).item() < 1e-6
    assert losses.encoder_adversarial_loss(torch.full((2,), -20.0)).item() > 19


def test_softmax_then_cross_entropy_is_the_earlier_implementations_double_softmax_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]; cross-entropy of those as logits: -log(e^(3/4) / (e^(1/4) + e^(3/4)))
    logits, target = torch.tensor([[0.0, math.log(3)]]), torch.tensor([1])
    assert losses.softmax_then_cross_entropy(logits, target).item() == pytest.approx(math.log1p(math.exp(-0.5)))
    # a confident right answer is still charged log(1 + e^-1) = 0.31 (on logits it costs ~0)
    assert losses.softmax_then_cross_entropy(torch.tensor([[10.0, -10.0]]), torch.tensor([0])).item() == pytest.approx(
        math.log1p(math.exp(-1)), abs=1e-6
    )
    # a ClassifierBank's padded class (-inf logit) stays out of both softmaxes
    padded = torch.tensor([[0.0, math.log(3), float("-inf")]])
    assert losses.softmax_then_cross_entropy(padded, target).item() == pytest.approx(math.log1p(math.exp(-0.5)))


def test_reversal_loss_is_minus_the_discriminators_whole_loss():
    joint, shuffled = torch.tensor([0.3, -1.0]), torch.tensor([2.0, 0.5])
    assert losses.discriminator_reversal_loss(joint, shuffled).item() == pytest.approx(
        -losses.discriminator_loss(joint, shuffled).item()
    )


def test_gaussian_gram_uses_the_median_squared_distance_as_bandwidth():
    k = losses.gaussian_gram(torch.tensor([[0.0], [1.0]]))  # d^2 = 1 = the median: exp(-1/2)
    assert torch.allclose(k, torch.tensor([[1, math.exp(-0.5)], [math.exp(-0.5), 1]]))
    k = losses.gaussian_gram(torch.tensor([[0.0], [1.0], [3.0]]))  # d^2 in {1, 4, 9}, median 4
    assert k[0, 1].item() == pytest.approx(math.exp(-1 / 8)) and k[1, 2].item() == pytest.approx(math.exp(-4 / 8))


def test_hsic_of_two_points_by_hand():
    # n = 2: H K H = (1 - k) / 2 [[1, -1], [-1, 1]], so tr(KHLH) / (n - 1)^2 = (1 - k)(1 - l)
    k, l = torch.tensor([[1.0, 0.2], [0.2, 1.0]]), torch.tensor([[1.0, 0.6], [0.6, 1.0]])
    assert losses.hsic(k, l).item() == pytest.approx(0.8 * 0.4)


def test_normalised_hsic_is_zero_for_independent_one_for_identical_and_blind_to_scale():
    # A 2 x 2 design: S the first coordinate, E the second; each value of one meets each of the other once.
    s, e = torch.tensor([[0.0], [0.0], [1.0], [1.0]]), torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    assert losses.normalised_hsic(s, e).item() == pytest.approx(0.0, abs=1e-5)  # centred Grams orthogonal
    assert losses.normalised_hsic(s, s).item() == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, 3, generator=g), torch.randn(32, 2, generator=g)
    mixed = torch.cat([a[:, :1], b], 1)  # E holds a copy of one of S's coordinates
    value = losses.normalised_hsic(a, mixed).item()
    # E cannot shrink (or grow) its way out: the median bandwidth scales with it
    assert losses.normalised_hsic(a, 1e-3 * mixed).item() == pytest.approx(value, rel=1e-4)
    assert losses.normalised_hsic(a, 50 * mixed).item() == pytest.approx(value, rel=1e-4)
    assert value > losses.normalised_hsic(a, b).item() + 0.1  # the shared coordinate shows


def test_whitened_gives_a_batch_unit_variance_in_every_direction_and_passes_gradients():
    g = torch.Generator().manual_seed(2)
    z = (torch.randn(200, 3, generator=g) @ torch.tensor([[5.0, 0, 0], [4.0, 0.1, 0], [0, 0, 0.01]])).requires_grad_()
    w = losses.whitened(z, shrinkage=0.0)
    assert torch.allclose(w.T @ w / 199, torch.eye(3), atol=1e-4)  # identity covariance, whatever z's scales
    assert torch.allclose(w.mean(0), torch.zeros(3), atol=1e-5)
    shrunk = losses.whitened(z.detach())  # shrinkage damps only the directions far below the mean variance
    assert (shrunk.T @ shrunk / 199).diagonal()[2].item() < 0.01
    (grad,) = torch.autograd.grad((w[:, 0] * torch.randn(200, generator=g)).sum(), z)
    assert grad.abs().sum() > 0


def _hues_and_a_hidden_factor(g: torch.Generator, n: int = 64, scale: float = 0.3, dependent: bool = True):
    """S holds a 4-valued factor f; E is three 10-valued "hues" spread over 64 coordinates plus f (or an
    independent copy of its distribution) along one direction at `scale`, small beside the hues' spread."""
    f = torch.randint(0, 4, (n, 1), generator=g).float()
    s = torch.cat([f + 0.1 * torch.randn(n, 1, generator=g), 0.3 * torch.randn(n, 63, generator=g)], 1)
    hues = torch.randint(0, 10, (n, 3), generator=g).float()
    e = hues @ torch.randn(3, 64, generator=g) + 0.05 * torch.randn(n, 64, generator=g)
    g_ = f if dependent else torch.randint(0, 4, (n, 1), generator=g).float()
    return s, e + scale * g_ @ torch.randn(1, 64, generator=g)


def test_whitened_hsic_sees_a_factor_hidden_under_larger_hue_directions_that_the_joint_kernel_misses():
    # The mistake it catches: one Gaussian kernel on E as it comes. E's distances, hence its Gram, are ruled
    # by the hue directions; a shared factor kept along a small direction barely moves them (a probe reads it
    # back), so the joint measure reads it as it reads an independent E. Means of 5 batches of 64.
    g = torch.Generator().manual_seed(0)

    def mean(measure, dependent):
        return sum(measure(*_hues_and_a_hidden_factor(g, dependent=dependent)).item() for _ in range(5)) / 5

    joint = mean(losses.normalised_hsic, True) - mean(losses.normalised_hsic, False)
    whitened = mean(losses.whitened_hsic, True) - mean(losses.whitened_hsic, False)
    assert abs(joint) < 0.03  # blind: 0.170 against 0.170 here
    assert whitened > 0.15  # 0.42 against 0.18 here
    # and whitening makes it blind to E's scale and to a rotation of E
    s, e = _hues_and_a_hidden_factor(g)
    q, _ = torch.linalg.qr(torch.randn(64, 64, generator=g))
    value = losses.whitened_hsic(s, e).item()
    assert losses.whitened_hsic(s, 1e-3 * e).item() == pytest.approx(value, rel=1e-3)
    assert losses.whitened_hsic(s, e @ q).item() == pytest.approx(value, rel=1e-2)


def test_the_switched_term_spares_hues_that_s_leaks_and_still_sees_a_shared_factor_in_e():
    # The mistake it catches: holding E_X independent of S_X when S_X leaks some of X's hue. An E that holds
    # only X's hue is then penalised for the hue itself; S_Y (the pair's other image) has X's shared factor
    # and Y's hue, drawn independently of X's, so against S_Y only a shared factor in E counts.
    from dismi.model.objectives import ExclusiveModel

    g = torch.Generator().manual_seed(5)
    n = 64
    f = torch.randint(0, 4, (n, 1), generator=g).float()  # the pair's shared factor
    hue_x, hue_y = (torch.randint(0, 10, (n, 1), generator=g).float() for _ in range(2))
    s = torch.cat([torch.cat([f, 0.5 * h], 1) for h in (hue_x, hue_y)])  # S_X then S_Y: f and a hue leak
    only_hue = torch.cat([hue_x, hue_y]) + 0.1 * torch.randn(2 * n, 1, generator=g)
    with_factor = torch.cat([only_hue, torch.cat([f, f])], 1)

    def term(hsic_with, e):
        model = ExclusiveModel(
            1, 2, 1, 1, alpha=0, beta=0, lambda_adv=0, lambda_hsic=1, hsic_kernel="whitened", hsic_with=hsic_with
        )
        return model.dependence(s, e).item() / 2  # per view

    assert term("shared", only_hue) > 0.5  # the leak: E_X's hue against S_X's (0.82 here)
    assert term("switched", only_hue) < 0.1  # X's hue against S_Y: independent (0.06)
    assert term("switched", with_factor) > term("switched", only_hue) + 0.2  # the shared factor counts (0.36)


def test_gaussian_gram_sends_no_gradient_through_its_bandwidth():
    # The median bandwidth is detached: the gradient is that of a kernel whose bandwidth is a constant.
    g = torch.Generator().manual_seed(1)
    z, w = torch.randn(9, 3, generator=g).requires_grad_(True), torch.randn(9, 9, generator=g)
    (mine,) = torch.autograd.grad((losses.gaussian_gram(z) * w).sum(), z)
    d2 = losses.squared_distances(z)
    bandwidth = d2[~torch.eye(9, dtype=torch.bool)].median().item()  # a plain number
    (constant,) = torch.autograd.grad((torch.exp(-d2 / (2 * bandwidth)) * w).sum(), z)
    assert torch.allclose(mine, constant, atol=1e-6) and mine.abs().sum() > 0


class _SpyStatistics(nn.Module):
    """Scores 0 and records which representation each feature map was paired with."""

    def __init__(self):
        super().__init__()
        self.reps = []

    def embed(self, fmap):
        return fmap.flatten(1)[:, :1]

    def score(self, h, rep):
        self.reps.append(rep.detach().clone())
        return torch.zeros(len(h), requires_grad=True)


def _shared_forward(switched, n_pairs=4):
    torch.manual_seed(0)
    model = SharedModel(2, 3, alpha=0.5, beta=1.0, gamma=0.1, switched=switched)
    model.global_net, model.local_net = _SpyStatistics(), _SpyStatistics()
    x = torch.randn(2 * n_pairs, 3, 64, 64)
    negatives = losses.other_in_view(n_pairs, torch.Generator().manual_seed(1), torch.device("cpu"))
    model(x, torch.zeros(2 * n_pairs, 6, dtype=torch.long), negatives)
    with torch.no_grad():
        s = model.encoder(x)[0]
    return model, s.chunk(2), negatives


@pytest.mark.parametrize("net", ["global_net", "local_net"])
def test_switched_terms_score_x_with_s_y_and_y_with_s_x_in_joint_and_negative_parts(net):
    model, (s_x, s_y), negatives = _shared_forward(switched=True)
    (reps,) = getattr(model, net).reps
    joint, negative = reps.chunk(2)
    b = len(s_x)
    assert torch.allclose(joint[:b], s_y) and torch.allclose(joint[b:], s_x)
    # negatives: X maps with S_Y of ANOTHER pair, Y maps with S_X of another pair
    assert torch.allclose(negative[:b], s_y[negatives[:b]]) and torch.allclose(negative[b:], s_x[negatives[b:] - b])
    assert (negatives[:b] != torch.arange(b)).all()


def test_unswitched_ablation_scores_each_map_with_its_own_representation():
    model, (s_x, s_y), negatives = _shared_forward(switched=False)
    (reps,) = model.global_net.reps
    joint, negative = reps.chunk(2)
    b = len(s_x)
    assert torch.allclose(joint, torch.cat([s_x, s_y]))
    assert torch.allclose(negative[:b], s_x[negatives[:b]]) and torch.allclose(negative[b:], s_y[negatives[b:] - b])


def test_exclusive_terms_score_each_map_with_its_own_full_representation_and_d_sees_joint_vs_shuffled():
    torch.manual_seed(0)
    model = ExclusiveModel(2, 3, 2, 4, alpha=0.5, beta=1.0, lambda_adv=0.01)
    model.global_net = _SpyStatistics()
    seen = []
    model.discriminator.register_forward_hook(lambda m, args, out: seen.append(args))
    n = 3
    s, e = torch.randn(2 * n, 3), torch.randn(2 * n, 4)
    fmap_sh, fmap_ex = torch.randn(2 * n, 16, 5, 5), torch.randn(2 * n, 16, 5, 5)
    negatives = losses.other_in_view(n, torch.Generator().manual_seed(1), torch.device("cpu"))
    model(s, fmap_sh, e, fmap_ex, torch.zeros(2 * n, 6, dtype=torch.long), negatives)
    joint, negative = model.global_net.reps[0].chunk(2)
    r = torch.cat([s, e], 1)
    assert torch.equal(joint, r) and torch.equal(negative, r[negatives])
    assert torch.equal(seen[0][0], s) and torch.equal(seen[0][1], e)  # encoder's term: joint samples
    seen.clear()
    model.discriminator_loss(s, e, negatives)
    (s_joint, e_joint), (s_shuf, e_shuf) = seen
    assert torch.equal(e_joint, e) and torch.equal(s_shuf, s) and torch.equal(e_shuf, e[negatives])
