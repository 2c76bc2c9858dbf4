"""Shapes of the report's Tables I-V, and every layer of every scoring network doing something."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dismi.model.networks import (
    Classifier,
    ClassifierBank,
    Discriminator,
    Encoder,
    GlobalStatistics,
    LocalStatistics,
    encode,
    seeded,
    to_input,
)
from dismi.model.objectives import ExclusiveModel, SharedModel
from dismi.model.terms import Adversary
from dismi.util.errors import DismiError


def _images(n, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8))


def test_to_input_scales_uint8_to_minus_one_one_channels_first_in_nhwc_memory():
    img = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    img[0, 5, 7] = torch.tensor([0, 255, 128], dtype=torch.uint8)
    x = to_input(img)
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x[0, :, 5, 7].tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)
    assert x.min() == -1.0 and x.max() == 1.0


@pytest.mark.parametrize("width,dim", [(64, 64), (4, 8)])
def test_encoder_gives_8w_by_5_by_5_map_and_representation(width, dim):
    enc = Encoder(width, dim)
    rep, fmap = enc(to_input(_images(2)))
    assert rep.shape == (2, dim)
    assert fmap.shape == (2, 8 * width, 5, 5)  # 512 x 5 x 5 at the paper's width 64


def test_encoder_layers_follow_table_1():
    enc = Encoder(8, 16)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (3, 8, (4, 4), (1, 1), (0, 0)),
        (8, 16, (4, 4), (2, 2), (0, 0)),
        (16, 32, (4, 4), (2, 2), (0, 0)),
        (32, 64, (4, 4), (2, 2), (0, 0)),
    ]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in enc.modules()) == 3  # conv1-3, not conv0


def test_statistics_networks_score_shapes_and_exclusive_global_net_sees_16w_channels():
    width = 64
    shared = SharedModel(width, 64, alpha=0.5, beta=1.0, gamma=0.1, switched=True)
    assert shared.global_net.convs[0].in_channels == 512
    ex = ExclusiveModel(
        width, 64, width, 64, alpha=0.5, beta=1.0, terms=lambda s_dim, e_dim: [Adversary(s_dim, e_dim, weight=0.01)]
    )
    assert ex.global_net.convs[0].in_channels == 16 * width == 1024
    assert ex.local_net.map_in.in_features == 1024
    fmap, rep = torch.randn(3, 1024, 5, 5), torch.randn(3, 128)
    assert ex.global_net(fmap, rep).shape == (3,)
    assert ex.local_net(fmap, rep).shape == (3, 25)  # one score per location of the 5x5 map
    assert ex.terms[0].discriminator(rep[:, :64], rep[:, 64:]).shape == (3,)


def test_local_network_equals_1x1_convs_over_map_concatenated_with_tiled_representation():
    torch.manual_seed(0)
    net = LocalStatistics(6, 3, width=2)
    fmap, rep = torch.randn(2, 6, 5, 5), torch.randn(2, 3)
    tiled = torch.cat([fmap, rep[:, :, None, None].expand(2, 3, 5, 5)], dim=1)  # Table III literally
    w0 = torch.cat([net.map_in.weight, net.rep_in.weight], dim=1)[:, :, None, None]
    h = torch.relu(nn.functional.conv2d(tiled, w0, net.map_in.bias))
    h = torch.relu(nn.functional.conv2d(h, net.head[1].weight[:, :, None, None], net.head[1].bias))
    out = nn.functional.conv2d(h, net.head[3].weight[:, :, None, None], net.head[3].bias)
    assert torch.allclose(net(fmap, rep), out.flatten(1), atol=1e-5)


def _layers(net):
    return [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


@pytest.mark.parametrize(
    "make,inputs",
    [
        (lambda: GlobalStatistics(16, 8, width=4), lambda: (torch.randn(4, 16, 5, 5), torch.randn(4, 8))),
        (lambda: LocalStatistics(16, 8, width=4), lambda: (torch.randn(4, 16, 5, 5), torch.randn(4, 8))),
        (lambda: Discriminator(8, 8), lambda: (torch.randn(4, 8), torch.randn(4, 8))),
    ],
)
def test_every_layer_of_each_scoring_network_changes_its_output(make, inputs):
    # Regression: an earlier global network overwrote its second dense layer's output.
    torch.manual_seed(0)
    net, args = make(), inputs()
    base = net(*args)
    layers = _layers(net)
    assert len(layers) >= 3
    for layer in layers:
        with torch.no_grad():
            layer.weight.add_(0.5)
            changed = not torch.allclose(net(*args), base)
            layer.weight.sub_(0.5)
        assert changed, f"perturbing {layer} left the output unchanged"
    with torch.no_grad():  # and the representation input matters too
        assert not torch.allclose(net(args[0], args[1].flip(0)), base)


def test_classifier_returns_logits_not_probabilities():
    torch.manual_seed(0)
    clf = Classifier(8, 5, hidden=256)
    out = clf(torch.randn(16, 8) * 10)
    assert out.shape == (16, 5)
    assert (out < 0).any() and not torch.allclose(out.sum(1), torch.ones(16))


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    a = seeded(lambda: Encoder(4, 8), torch.Generator().manual_seed(3))
    b = seeded(lambda: Encoder(4, 8), torch.Generator().manual_seed(3))
    c = seeded(lambda: Encoder(4, 8), torch.Generator().manual_seed(4))
    assert torch.equal(torch.random.get_rng_state(), before)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.dense.weight, c.dense.weight)
    assert a.convs[3][1].weight.eq(1).all()  # BatchNorm starts at identity


def test_encode_runs_in_eval_mode_in_batches_and_restores_mode():
    torch.manual_seed(0)
    enc = Encoder(4, 8).train()
    imgs = _images(5).numpy()
    codes = encode(enc, imgs, batch_size=2)
    assert codes.shape == (5, 8) and codes.dtype == np.float32
    assert enc.training  # mode restored
    enc.eval()
    with torch.no_grad():
        expected = enc(to_input(torch.from_numpy(imgs)))[0].numpy()
    np.testing.assert_allclose(codes, expected, rtol=1e-5, atol=1e-5)  # eval mode: batch-independent


def test_folded_batchnorm_computes_the_eval_mode_encoder_and_leaves_it_alone():
    """encode folds each BatchNorm into its conv: with trained (non-trivial) running statistics the
    codes must still be the eval-mode encoder's, and the encoder's own weights untouched."""
    torch.manual_seed(1)
    enc = Encoder(4, 8)
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.3, 3.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    imgs = _images(6).numpy()
    codes = encode(enc, imgs, batch_size=4)
    with torch.no_grad():
        expected = enc.eval()(to_input(torch.from_numpy(imgs)))[0].numpy()
    np.testing.assert_allclose(codes, expected, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_encode_rejects_float_images_with_one_line():
    with pytest.raises(DismiError, match="uint8 array of shape"):
        encode(Encoder(4, 8), np.zeros((2, 64, 64, 3), dtype=np.float32))


BANKS = {
    "paper": ([10, 10, 10, 8, 4, 15], [10, 10, 10, 8, 4, 15]),
    "wide": ([10, 4, 15], [32, 32, 32]),
    "mixed": ([3, 7], [5, 9]),
}


def _separate_and_bank(kind: str):
    n_classes, hidden = BANKS[kind]
    gen = torch.Generator().manual_seed(1)
    separate = [seeded(lambda n=n, h=h: Classifier(8, n, hidden=h), gen) for n, h in zip(n_classes, hidden)]
    return separate, ClassifierBank.from_classifiers(separate), n_classes


def _compare(bank, separate, n_classes, z):
    """-> (the bank's logits, each classifier's), checked equal; one forward of each (running statistics)."""
    logits, theirs = bank(z), [c(z) for c in separate]  # (B, K, max classes), K x (B, n_k)
    assert logits.shape == (len(z), len(n_classes), max(n_classes))
    for k, n in enumerate(n_classes):
        torch.testing.assert_close(logits[:, k, :n], theirs[k], rtol=1e-5, atol=1e-5)
        assert torch.isneginf(logits[:, k, n:]).all()
    return logits, theirs


@pytest.mark.parametrize("kind", list(BANKS))
def test_the_classifier_bank_computes_what_separate_classifiers_compute_through_adam_steps(kind):
    separate, bank, n_classes = _separate_and_bank(kind)
    padding = [p.detach().clone().bool().logical_not() for p in (bank.w2, bank.w3)]  # zeros now: padding
    gen = torch.Generator().manual_seed(2)
    for _ in range(2):  # train mode: batch statistics, and running statistics updated alike
        _compare(bank, separate, n_classes, torch.randn(16, 8, generator=gen))
    for m in (bank, *separate):
        m.eval()
    _compare(bank, separate, n_classes, torch.randn(5, 8, generator=gen))
    for m in (bank, *separate):
        m.train()
    opt_a = torch.optim.Adam([p for c in separate for p in c.parameters()], lr=1e-2, fused=True)
    opt_b = torch.optim.Adam(bank.parameters(), lr=1e-2, fused=True)
    for _ in range(3):
        z = torch.randn(16, 8, generator=gen)
        y = torch.stack([torch.randint(0, n, (16,), generator=gen) for n in n_classes], dim=1)  # (16, K)
        logits, theirs = _compare(bank, separate, n_classes, z)
        loss_b = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss_a = torch.stack([F.cross_entropy(t, y[:, k]) for k, t in enumerate(theirs)]).mean()
        torch.testing.assert_close(loss_b, loss_a)
        for opt, loss in ((opt_a, loss_a), (opt_b, loss_b)):
            opt.zero_grad()
            loss.backward()
            opt.step()
    # after three updates: the same weights (but the biases before BatchNorm: their gradient is zero up to
    # rounding, which Adam's normalisation blows up in any two implementations), the padding still zero
    again = ClassifierBank.from_classifiers(separate)
    h = max(bank.hidden)
    real = torch.tensor([j < bank.hidden[k] for k in range(len(n_classes)) for j in range(h)])  # hidden units
    for (name, mine), theirs in zip(bank.state_dict().items(), again.state_dict().values()):
        if name.startswith("bn") and mine.dim() == 1:  # padded units' statistics are never read
            mine, theirs = mine[real], theirs[real]
        if name not in ("b1", "b2", "bn1.running_mean", "bn2.running_mean"):  # (means: of biased inputs)
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6, msg=name)
    assert all(p[pad].eq(0).all() for p, pad in zip((bank.w2, bank.w3), padding))
    _compare(bank, separate, n_classes, torch.randn(16, 8, generator=gen))


def test_a_seeded_classifier_bank_draws_each_block_as_a_linear_layer_would_and_pads_with_zeros():
    bank = seeded(lambda: ClassifierBank(8, [10, 4], [10, 4]), torch.Generator().manual_seed(0))
    assert bank.valid.tolist() == [[True] * 10, [True] * 4 + [False] * 6]  # filled, though built on meta
    real = torch.zeros_like(bank.w2, dtype=torch.bool)
    for weight, bias, rows, fan_in in bank.blocks():
        assert weight.shape == (rows, fan_in) and bias.shape == (rows,)
        assert 0 < weight.abs().max() <= fan_in**-0.5 and bias.abs().max() <= fan_in**-0.5
        assert weight.std() > 0.4 * fan_in**-0.5  # uniform over the whole range, not a corner of it
    real[0, :10, :10] = True
    real[1, :4, :4] = True
    assert bank.w2[~real].eq(0).all() and bank.w3[1, 4:].eq(0).all() and bank.b3[1, 4:].eq(0).all()
    with pytest.raises(ValueError, match="one hidden width per classifier"):
        ClassifierBank(8, [10, 4], [10])
