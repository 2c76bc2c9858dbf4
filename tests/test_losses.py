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


def test_infonce_is_ln_n_minus_the_cross_entropy_of_picking_the_joint_sample_by_hand():
    # scores [ln 3, 0, 0]: softmax picks column 0 with 3/5, so the estimate is ln 3 + ln 3/5
    scores = torch.tensor([[math.log(3), 0.0, 0.0]])
    assert losses.infonce_mi(scores).item() == pytest.approx(math.log(3) + math.log(3 / 5))
    # uninformative scores give 0 nats; a sure pick tends to the bound ln N
    assert losses.infonce_mi(torch.zeros(4, 8)).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.infonce_mi(torch.tensor([[50.0, 0.0, 0.0, 0.0]])).item() == pytest.approx(math.log(4), abs=1e-6)
    # per location (n, N, L): the mean over rows and locations
    two = torch.stack([torch.zeros(1, 3), torch.tensor([[math.log(3), 0.0, 0.0]])], 2)  # (1, 3, 2)
    assert losses.infonce_mi(two).item() == pytest.approx((math.log(3) + math.log(3 / 5)) / 2)


def test_gaussian_slice_mi_is_minus_half_log_one_minus_rho_squared_by_hand():
    from dismi.model.terms.sliced import gaussian_slice_mi

    a = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    # slice 0: sum ab = 4 of sum a^2 = sum b^2 = 4: rho 1 (clamped); slice 1: sum ab = 1 - 1 + 1 - 1 = 0;
    # the mean over the two slices
    got = gaussian_slice_mi(a, b).item()
    assert got == pytest.approx(0.5 * (-0.5 * math.log(1e-6)), rel=1e-3)
    c = torch.tensor([[3.0], [1.0], [-1.0], [-3.0]])  # rho(c, d) = 0.6 by hand: sum cd 12, sum c^2 20, sum d^2 20
    d = torch.tensor([[1.0], [3.0], [-3.0], [-1.0]])
    assert gaussian_slice_mi(c, d).item() == pytest.approx(-0.5 * math.log(1 - 0.6**2))
    assert gaussian_slice_mi(c, 5 * d + 2).item() == pytest.approx(-0.5 * math.log(1 - 0.6**2))  # scale-free


def test_weighted_infonce_counts_each_negative_by_its_weight_by_hand():
    # scores [ln 3, 0, 0], weights 2/3 and 1/3 over the 2 negatives (ln-weights ln(2 * w)): the denominator
    # is 3 + 2 (2/3 + 1/3) = 5, as unweighted; all weight on a negative scored ln 2 gives 3 + 2 * 2 = 7
    scores = torch.tensor([[math.log(3), 0.0, 0.0]])
    log_w = torch.tensor([[0.0, math.log(4 / 3), math.log(2 / 3)]])
    assert losses.infonce_mi(scores, log_w).item() == pytest.approx(math.log(3) + math.log(3 / 5))
    skewed = torch.tensor([[math.log(3), math.log(2), 0.0]])
    all_on_first = torch.tensor([[0.0, math.log(2), -math.inf]])
    assert losses.infonce_mi(skewed, all_on_first).item() == pytest.approx(math.log(3) + math.log(3 / 7))
    # per location (n, N, L): the row's weights apply at every location
    two = torch.stack([scores, scores], 2)  # (1, 3, 2)
    assert losses.infonce_mi(two, log_w).item() == pytest.approx(math.log(3) + math.log(3 / 5))


def test_kernel_weights_favour_negatives_whose_s_is_near_and_are_uniform_when_s_is():
    s = torch.tensor([[0.0], [0.0], [1.0], [3.0]])
    candidates = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3], [2, 3, 0, 1], [3, 2, 1, 0]])
    log_w = losses.kernel_log_weights(s, candidates)
    assert torch.equal(log_w[:, 0], torch.zeros(4))  # the joint sample counts once
    w = log_w[:, 1:].exp() / 3  # the weights themselves: each row's sum to 1
    assert torch.allclose(w.sum(1), torch.ones(4))
    # by hand: row 0's squared distances 0, 1, 9; h = the (lower) median of all rows' 0,1,9 0,1,9 4,1,1 4,9,9 = 1
    e = torch.tensor([1.0, math.exp(-1), math.exp(-9)])
    assert torch.allclose(w[0], e / e.sum())
    assert w[0, 0] > w[0, 1] > w[0, 2]  # nearest by S first
    flat = losses.kernel_log_weights(torch.zeros(4, 2), candidates)
    assert torch.allclose(flat, torch.zeros(4, 4), atol=1e-6)  # plain InfoNCE


def test_group_candidates_list_each_image_first_then_the_other_images_of_its_group():
    c = losses.group_candidates(4, 2, torch.device("cpu"))  # pairs (0, 1) and (2, 3); X rows 0-3, Y rows 4-7
    assert c[:, 0].tolist() == list(range(8))
    for row in range(8):
        group = (row % 4) // 2
        members = {2 * group, 2 * group + 1, 4 + 2 * group, 5 + 2 * group}
        assert set(c[row].tolist()) == members  # its group, every member once
    with pytest.raises(ValueError, match="groups of 3"):
        losses.group_candidates(4, 3, torch.device("cpu"))


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


def _exclusive_model(lambda_adv=0.01):
    from dismi.model.terms import Adversary

    return ExclusiveModel(
        2, 3, 2, 4, alpha=0.5, beta=1.0, terms=lambda s_dim, e_dim: [Adversary(s_dim, e_dim, weight=lambda_adv)]
    )


def test_exclusive_terms_score_each_map_with_its_own_full_representation_and_d_sees_joint_vs_shuffled():
    torch.manual_seed(0)
    model = _exclusive_model()
    model.global_net = _SpyStatistics()
    seen = []
    (adversary,) = model.terms
    adversary.discriminator.register_forward_hook(lambda m, args, out: seen.append(args))
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
    adversary.discriminator_loss(s, e, negatives)
    (s_joint, e_joint), (s_shuf, e_shuf) = seen
    assert torch.equal(e_joint, e) and torch.equal(s_shuf, s) and torch.equal(e_shuf, e[negatives])


def test_conditional_negatives_score_each_map_with_every_representation_of_its_group_its_own_first():
    torch.manual_seed(0)
    model = _exclusive_model()
    model.global_net = _SpyStatistics()
    n, group = 4, 2
    s, e = torch.randn(2 * n, 3), torch.randn(2 * n, 4)
    fmap = torch.randn(2 * n, 16, 5, 5)
    candidates = losses.group_candidates(n, group, torch.device("cpu"))
    terms = model(s, fmap, e, fmap, torch.zeros(2 * n, 6, dtype=torch.long), candidates)
    (reps,) = model.global_net.reps
    r = torch.cat([s, e], 1)
    assert torch.equal(reps, r[candidates.flatten()])  # row i's N candidates, i first
    assert terms["global"].item() == pytest.approx(0.0, abs=1e-6)  # zero scores: 0 nats, per view


def test_the_infonce_term_grows_to_its_bound_when_the_code_tells_the_group_apart():
    # A statistics network that scores <h, rep> reads each image's identity in a code that holds it:
    # InfoNCE approaches ln N per view; a code constant within the group scores 0.
    class Dot(nn.Module):
        def embed(self, fmap):
            return fmap.flatten(1)

        def score(self, h, rep):
            return 30 * (h * rep).sum(1)

    n, group = 4, 4
    ids = torch.eye(2 * n)
    candidates = losses.group_candidates(n, group, torch.device("cpu"))
    told = losses.statistics_infonce(Dot(), ids[:, :, None, None], ids, candidates)
    assert told.item() == pytest.approx(2 * math.log(2 * group), abs=1e-3)
    same = losses.statistics_infonce(Dot(), ids[:, :, None, None], torch.ones(2 * n, 2 * n), candidates)
    assert same.item() == pytest.approx(0.0, abs=1e-6)
