"""Tests that guard the method itself: each fails if the named mistake is made.

- the online classifiers' loss reaching an encoder (the method would become supervised);
- gamma (eq. 5) or lambda_adv (eq. 8) changing sign;
- alpha and beta (global vs local MI weights) swapped, in either stage;
- the discriminator's optimizer updating anything but D, or the main optimizer updating D;
- training drawing a test image;
- a training stage handing the trainer the wrong param.

Models are built through the trainers, so a mistake in the trainer's wiring fails too. Tiny sizes.
"""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dismi.data.pairfile import TEST, TRAIN
from dismi.model import losses
from dismi.model.networks import Encoder, seeded, to_input
from dismi.train import training
from dismi.train.training import DevicePairs, ExclusiveTrainer, SharedTrainer
from stages.__main__ import app

CPU = torch.device("cpu")
WIDTH, DIM, PAIRS = 2, 4, 4  # encoder width, size of S and of E, pairs per batch


def _shared(alpha=0.0, beta=0.0, gamma=0.0, lr=1e-3) -> SharedTrainer:
    return SharedTrainer(
        width=WIDTH, dim=DIM, alpha=alpha, beta=beta, gamma=gamma, switched=True, lr=lr, seed=0, device=CPU
    )


def _exclusive(alpha=0.0, beta=0.0, lambda_adv=0.0, lr=1e-3) -> ExclusiveTrainer:
    shared = seeded(lambda: Encoder(WIDTH, DIM), torch.Generator().manual_seed(5)).eval()
    return ExclusiveTrainer(
        shared=shared, width=WIDTH, dim=DIM, alpha=alpha, beta=beta, lambda_adv=lambda_adv, lr=lr, seed=0, device=CPU
    )


def _batch(tiny_pairs):
    """A fixed batch of train pairs: network input (2B, 3, 64, 64), classes (2B, 6), negatives (2B,)."""
    train = DevicePairs(tiny_pairs(), TRAIN, CPU)
    rows = train.draw(PAIRS, torch.Generator().manual_seed(0))  # X images, then their Y partners
    images, classes = train.images[rows], train.classes[rows]
    return to_input(images), classes, losses.other_in_view(PAIRS, torch.Generator().manual_seed(1), CPU)


def _terms(tiny_pairs, trainer) -> dict[str, torch.Tensor]:
    """The model's loss terms on the fixed batch, as the trainer's step computes them."""
    x, classes, negatives = _batch(tiny_pairs)
    if isinstance(trainer, SharedTrainer):
        return trainer.model(x, classes, negatives)
    with torch.no_grad():
        s, fmap_sh = trainer.shared(x)
    e, fmap_ex = trainer.model.encoder(x)
    return trainer.model(s, fmap_sh, e, fmap_ex, classes, negatives)


def _grad(loss: torch.Tensor, module: torch.nn.Module) -> float:
    """Total |gradient| of `loss` over `module`'s parameters (0 where it does not reach them)."""
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return sum(0.0 if g is None else g.abs().sum().item() for g in grads)


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


BOTH = pytest.mark.parametrize("make", [_shared, _exclusive], ids=["shared", "exclusive"])


# --------------------------------------------------------------------------- (i) classifiers stay unsupervised


@BOTH
def test_online_classifier_loss_gives_the_encoder_no_gradient(make, tiny_pairs):
    trainer = make(alpha=0.5, beta=1.0)
    terms = _terms(tiny_pairs, trainer)
    assert _grad(terms["classifier"], trainer.model.encoder) == 0.0
    assert _grad(terms["classifier"], trainer.model.classifiers) > 0.0  # while the classifiers do learn
    assert _grad(terms["total"], trainer.model.encoder) > 0.0  # and the objective does reach the encoder


@BOTH
def test_training_with_every_objective_weight_zero_leaves_the_encoder_untouched(make, tiny_pairs):
    # Only the classifiers' loss is left: if it reached the encoder, Adam would move it.
    trainer = make(lr=1e-2)
    encoder, classifiers = _params(trainer.model.encoder), _params(trainer.model.classifiers)
    trainer.run(DevicePairs(tiny_pairs(), TRAIN, CPU), batch_size=PAIRS, n=3)
    assert not _changed(encoder, trainer.model.encoder)
    assert _changed(classifiers, trainer.model.classifiers)


# --------------------------------------------------------------------------- (ii) gamma, (iii) lambda_adv


@pytest.mark.parametrize("gamma", [0.25, 2.0])
def test_gamma_adds_the_l1_distance_to_the_minimised_objective(gamma, tiny_pairs):
    terms = _terms(tiny_pairs, _shared(gamma=gamma))
    assert terms["l1"].item() > 0
    assert terms["total"].item() == pytest.approx(gamma * terms["l1"].item(), rel=1e-5)


def test_training_on_the_l1_term_alone_pulls_s_x_and_s_y_together(tiny_pairs):
    trainer = _shared(gamma=1.0, lr=1e-2)
    before = _terms(tiny_pairs, trainer)["l1"].item()
    trainer.run(DevicePairs(tiny_pairs(), TRAIN, CPU), batch_size=8, n=20)
    assert _terms(tiny_pairs, trainer)["l1"].item() < 0.8 * before  # 0.36 vs 0.59 here; with gamma's sign flipped, 38


@pytest.mark.parametrize("lambda_adv", [0.25, 2.0])
def test_lambda_adv_adds_the_encoders_adversarial_loss_to_the_minimised_objective(lambda_adv, tiny_pairs):
    terms = _terms(tiny_pairs, _exclusive(lambda_adv=lambda_adv))
    assert terms["adv_encoder"].item() > 0
    assert terms["total"].item() == pytest.approx(lambda_adv * terms["adv_encoder"].item(), rel=1e-5)


# --------------------------------------------------------------------------- (iv) alpha global, beta local


@BOTH
def test_alpha_weighs_the_global_mi_and_beta_the_local_mi(make, tiny_pairs):
    # The objective maximises MI: alpha alone gives -global, reaching the global network only.
    terms = _terms(tiny_pairs, make(alpha=1.0))
    assert terms["total"].item() == pytest.approx(-terms["global"].item(), rel=1e-5)
    trainer = make(alpha=1.0)
    terms = _terms(tiny_pairs, trainer)
    assert _grad(terms["total"], trainer.model.global_net) > 0.0
    assert _grad(terms["total"], trainer.model.local_net) == 0.0
    trainer = make(beta=1.0)
    terms = _terms(tiny_pairs, trainer)
    assert terms["total"].item() == pytest.approx(-terms["local"].item(), rel=1e-5)
    assert _grad(terms["total"], trainer.model.local_net) > 0.0
    assert _grad(terms["total"], trainer.model.global_net) == 0.0
    # Both at once, with different weights.
    terms = _terms(tiny_pairs, make(alpha=0.3, beta=0.7))
    assert abs(terms["global"].item() - terms["local"].item()) > 1e-3  # a swap would show
    assert terms["total"].item() == pytest.approx(
        -(0.3 * terms["global"].item() + 0.7 * terms["local"].item()), rel=1e-5
    )


# --------------------------------------------------------------------------- (v) who updates what


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def _optimised(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def test_discriminator_optimizer_updates_only_d_and_the_main_one_everything_else():
    trainer = _exclusive(alpha=0.5, beta=1.0, lambda_adv=0.01)
    d = _ids(trainer.model.terms[0].discriminator.parameters())
    assert set(trainer.optimizers) == {"main", "adv_discriminator"}
    assert _optimised(trainer.optimizers["adv_discriminator"]) == d
    assert _optimised(trainer.optimizers["main"]) == _ids(trainer.model.parameters()) - d
    assert not _ids(trainer.shared.parameters()) & (_optimised(trainer.optimizers["main"]) | d)  # frozen S


def test_shared_stage_optimises_every_parameter_of_its_model_once():
    trainer = _shared(alpha=0.5, beta=1.0, gamma=0.1)
    assert list(trainer.optimizers) == ["main"]
    params = [p for group in trainer.optimizers["main"].param_groups for p in group["params"]]
    assert len(params) == len(_ids(params)) and _ids(params) == _ids(trainer.model.parameters())


def test_a_step_moves_d_and_e_but_never_the_frozen_shared_encoder(tiny_pairs):
    trainer = _exclusive(alpha=0.5, beta=1.0, lambda_adv=0.01, lr=1e-2)
    d, e, s = (_params(m) for m in (trainer.model.terms[0].discriminator, trainer.model.encoder, trainer.shared))
    trainer.run(DevicePairs(tiny_pairs(), TRAIN, CPU), batch_size=PAIRS, n=1)
    assert _changed(d, trainer.model.terms[0].discriminator) and _changed(e, trainer.model.encoder)
    assert not _changed(s, trainer.shared)


# --------------------------------------------------------------------------- (vi) no test image in training


def _tagged_pairs(tiny_pairs):
    """tiny_pairs() with each image's row written into its corner pixel, so an image names itself."""
    data = tiny_pairs()
    data.images[:, 0, 0, 0] = np.arange(len(data.images))  # 96 rows: fits a uint8
    return data


def _rows(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].long().tolist()


def _split_pairs(data, split) -> set[tuple[int, int]]:
    p = data.pair_indices(split)
    return set(zip(data.x[p].tolist(), data.y[p].tolist()))


def test_train_device_pairs_hold_only_train_images_and_train_pairs(tiny_pairs):
    data = _tagged_pairs(tiny_pairs)
    train = DevicePairs(data, TRAIN, CPU)
    assert set(_rows(train.images)) == set(data.image_rows(TRAIN).tolist())
    assert not set(_rows(train.images)) & set(data.image_rows(TEST).tolist())
    assert set(zip(_rows(train.images[train.x]), _rows(train.images[train.y]))) == _split_pairs(data, TRAIN)


@BOTH
def test_a_training_run_never_draws_a_test_image(make, tiny_pairs):
    data, seen = _tagged_pairs(tiny_pairs), []
    trainer = make(alpha=0.5, beta=1.0)
    step = trainer.step

    def spy(images, classes, **kw):
        seen.append(images.clone())
        return step(images, classes, **kw)

    trainer.step = spy
    trainer.fit(
        data, iters=6, batch_size=8, log_every=3, checkpoint_every=6, log=lambda *a: None, save=lambda state: None
    )
    assert len(seen) == 6
    train_pairs = _split_pairs(data, TRAIN)
    for images in seen:
        rows = _rows(images)
        assert set(zip(rows[:8], rows[8:])) <= train_pairs  # X rows then their Y partners


# --------------------------------------------------------------------------- (vii) stage -> trainer params

# Every value distinct, so that handing one param where another belongs shows.
PARAMS = dict(
    alpha_sh=0.31,
    beta_sh=0.73,
    gamma=0.17,
    lr_sh=3e-3,
    width=3,
    shared_dim=5,
    switched=False,
    seed=7,
    l1_reduce="sum",
    alpha_ex=0.29,
    beta_ex=0.61,
    lambda_adv=0.043,
    beta_kl_ex=0.027,
    lambda_slice=0.019,
    negatives_ex="partner",
    neighbours_ex=2,
    lr_ex=4e-3,
    exclusive_dim=6,
    iters_sh=37,
    iters_ex=41,
    batch_size=9,
    log_every=11,
    checkpoint_every=13,
)
SHARED_ARGS = {
    "alpha": "alpha_sh",
    "beta": "beta_sh",
    "gamma": "gamma",
    "lr": "lr_sh",
    "width": "width",
    "dim": "shared_dim",
    "switched": "switched",
    "seed": "seed",
    "l1_reduce": "l1_reduce",
}
EXCLUSIVE_ARGS = {
    "alpha": "alpha_ex",
    "beta": "beta_ex",
    "lambda_adv": "lambda_adv",
    "beta_kl_ex": "beta_kl_ex",
    "lambda_slice": "lambda_slice",
    "negatives": "negatives_ex",
    "neighbours": "neighbours_ex",
    "lr": "lr_ex",
    "width": "width",
    "dim": "exclusive_dim",
    "seed": "seed",
}
FIT_ARGS = {"batch_size": "batch_size", "log_every": "log_every", "checkpoint_every": "checkpoint_every"}


class _Stop(Exception):
    pass


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b  # False == 0 and 1.0 == 1: types too


def test_the_test_params_are_pairwise_distinct():
    values = [(type(v), v) for v in PARAMS.values()]
    assert len(set(values)) == len(values)


def _stage_args(fixtures, tmp_path, pairs_file, stage: str, **params) -> tuple[list[str], Encoder | None]:
    """Command line of a training stage on the tiny pairs with `params`, outputs under tmp_path; for the
    exclusive stage also a saved shared encoder -> (arguments, that encoder or None)."""
    params_file, training_args, saved_shared = fixtures
    shared_path, shared = saved_shared(tmp_path, pairs_file) if stage == "train-exclusive" else (None, None)
    return training_args(tmp_path, stage, pairs_file, params_file(tmp_path, **params), shared_path), shared


@pytest.mark.parametrize("stage", ["train-shared", "train-exclusive"])
def test_each_training_stage_hands_the_trainer_the_params_of_its_own_keys(
    tmp_path, monkeypatch, pairs_file, stage, params_file, training_args, saved_shared
):
    name = "SharedTrainer" if stage == "train-shared" else "ExclusiveTrainer"
    real, seen = getattr(training, name), {}

    def trainer(**kwargs):
        seen["trainer"] = kwargs
        return real(**kwargs)

    def fit(self, data, **kwargs):
        seen["fit"] = kwargs
        raise _Stop

    monkeypatch.setattr(training, name, trainer)
    monkeypatch.setattr(training.Trainer, "fit", fit)
    p = PARAMS | {"device": "cpu"}
    args, shared = _stage_args((params_file, training_args, saved_shared), tmp_path, pairs_file, stage, **p)
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, _Stop), result.output

    expected = SHARED_ARGS if stage == "train-shared" else EXCLUSIVE_ARGS
    kwargs = seen["trainer"]
    for arg, key in expected.items():
        assert _same(kwargs[arg], p[key]), f"{name}({arg}=...) got {kwargs[arg]!r}, expected {key}={p[key]!r}"
    assert kwargs["device"] == CPU
    if stage == "train-exclusive":
        assert kwargs["shared"].out_dim == 8 and torch.equal(kwargs["shared"].dense.weight, shared.dense.weight)
    fit_expected = FIT_ARGS | {"iters": "iters_sh" if stage == "train-shared" else "iters_ex"}
    for arg, key in fit_expected.items():
        assert _same(seen["fit"][arg], p[key]), f"fit({arg}=...) got {seen['fit'][arg]!r}, expected {key}"


@pytest.mark.parametrize("stage", ["train-shared", "train-exclusive"])
def test_compile_true_on_a_cpu_stops_a_training_stage_with_one_line_and_no_model(
    tmp_path, monkeypatch, capsys, pairs_file, stage, run_stage, params_file, training_args, saved_shared
):
    # The stage hands `compile` to its trainer, which refuses it on a CPU (docs/performance.md).
    fixtures = (params_file, training_args, saved_shared)
    args, _ = _stage_args(fixtures, tmp_path, pairs_file, stage, device="cpu", compile=True)
    code, out = run_stage(*args)
    assert code == 1 and "compile=true is for CUDA devices" in out and "set compile to false" in out
    assert "Traceback" not in out and not (tmp_path / f"{stage.removeprefix('train-')}.pt").exists()


@pytest.mark.parametrize("make", [_shared, _exclusive], ids=["shared", "exclusive"])
def test_a_snapshot_is_the_encoder_as_it_was_not_as_training_left_it(make, tiny_pairs):
    """Catches snapshots that share storage with the live weights: on a CPU `.cpu()` and `.contiguous()` hand
    back the tensor itself, and every weight but the channels_last convolutions then followed the optimizer
    to the end of the run, so each learning-curve point was read off a mix of that iteration and the last."""

    def fit(trainer, iters):
        trainer.fit(
            tiny_pairs(),
            iters=iters,
            batch_size=PAIRS,
            log_every=iters,
            checkpoint_every=iters,
            log=lambda i, m: None,
            save=lambda s: None,
            snapshot_every=3,
        )
        return trainer

    longer, shorter = fit(make(alpha=0.5, beta=1.0, lr=1e-2), 9), fit(make(alpha=0.5, beta=1.0, lr=1e-2), 3)
    snapshot, then = longer.snapshots[3], shorter.model.encoder.state_dict()
    assert snapshot.keys() == then.keys()
    for k, v in then.items():
        assert torch.equal(snapshot[k], v), k  # the weights after 3 iterations, whatever came after
    moved = [k for k, v in longer.model.encoder.state_dict().items() if not torch.equal(v, then[k])]
    assert len(moved) > len(then) // 2  # and training did move them since
