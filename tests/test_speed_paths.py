"""The speed paths compute the same step: each optimisation the stages use is compared, one step's loss
terms and gradients, with the same step computed without it (docs/performance.md lists them)."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dismi.data.pairfile import TEST, TRAIN
from dismi.model import losses
from dismi.model.networks import Encoder, seeded, to_input
from dismi.train import training
from dismi.train.training import DevicePairs, ExclusiveTrainer, SharedTrainer, Trainer
from dismi.util import devices
from dismi.util.errors import DismiError

REPO = Path(__file__).resolve().parents[1]

CPU = torch.device("cpu")


def _exclusive(compile: bool = False) -> ExclusiveTrainer:
    shared = seeded(lambda: Encoder(4, 8), torch.Generator().manual_seed(5)).eval()
    return ExclusiveTrainer(
        shared=shared, width=4, dim=8, alpha=0.5, beta=1.0, lambda_adv=0.5, lr=1e-3, seed=0, device=CPU, compile=compile
    )


def _one_step(trainer: ExclusiveTrainer, train: DevicePairs, precompute: bool):
    rows = train.draw(4, torch.Generator().manual_seed(0))
    extra = trainer.precomputed(train, rows) if precompute else {}
    terms = trainer.step(train.images[rows], train.classes[rows], update=False, **extra)
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return terms, grads, extra


def test_the_exclusive_step_on_tabulated_shared_codes_equals_the_step_that_runs_the_shared_encoder(tiny_pairs):
    train = DevicePairs(tiny_pairs(), TRAIN, CPU)
    looked_up, computed = _exclusive(), _exclusive()
    t1, g1, extra = _one_step(looked_up, train, precompute=True)
    t2, g2, none = _one_step(computed, train, precompute=False)
    assert set(extra) == {"s", "fmap_sh"} and none == {}  # the table was used, and only on one side
    torch.testing.assert_close(t1, t2, rtol=1e-5, atol=1e-6)
    assert g1.keys() == g2.keys() and len(g1) > 10
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_table_is_built_once_per_split_and_not_at_all_over_the_memory_budget(monkeypatch, tiny_pairs):
    train = DevicePairs(tiny_pairs(), TRAIN, CPU)
    trainer = _exclusive()
    rows = train.draw(4, torch.Generator().manual_seed(0))
    first = trainer.precomputed(train, rows)["fmap_sh"]
    assert trainer._codes[1].shape[0] == len(train.images)
    table = trainer._codes
    trainer.precomputed(train, rows)
    assert trainer._codes is table  # not rebuilt
    torch.testing.assert_close(first, trainer.shared(to_input(train.images[rows]))[1], rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(devices, "cache_budget", lambda device: 0)
    assert _exclusive().precomputed(train, rows) == {}  # the step runs the shared encoder itself


STEP = """
import json, sys, torch
from dismi.util import allocator
from dismi.train.training import SharedTrainer
torch.set_num_threads(1)
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory()
trainer = SharedTrainer(width=4, dim=8, alpha=0.5, beta=1.0, gamma=0.1, switched=True, lr=1e-3, seed=0,
                        device=torch.device("cpu"))
images = torch.randint(0, 256, (8, 64, 64, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
classes = torch.zeros(8, 6, dtype=torch.long)
terms = trainer.step(images, classes, update=False)
grads = {n: p.grad.flatten()[:50].tolist() for n, p in trainer.model.named_parameters() if p.grad is not None}
print(json.dumps({"terms": terms.tolist(), "grads": grads}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the allocator setting is glibc's")
def test_keeping_freed_memory_changes_no_number():
    # In fresh processes: the setting is process-wide and cannot be undone.
    out = {
        mode: json.loads(
            subprocess.run(
                [sys.executable, "-c", STEP, mode], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout
        )
        for mode in ("default", "keep")
    }
    assert out["keep"] == out["default"]  # bit for bit: the same operations on the same values


def test_in_place_activations_give_the_same_codes_and_gradients():
    x = to_input(torch.randint(0, 256, (6, 64, 64, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8))
    results = []
    for inplace in (True, False):
        encoder = seeded(lambda: Encoder(4, 8), torch.Generator().manual_seed(1))
        assert any(getattr(m, "inplace", False) for m in encoder.modules())  # what the stages run
        for m in encoder.modules():
            if isinstance(m, torch.nn.LeakyReLU):
                m.inplace = inplace
        s, fmap = encoder(x)
        (s.square().sum() + fmap.sum()).backward()
        results.append((s.detach(), [p.grad for p in encoder.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _shared(compile: bool) -> SharedTrainer:
    return SharedTrainer(
        width=4,
        dim=8,
        alpha=0.5,
        beta=1.0,
        gamma=0.1,
        switched=True,
        lr=1e-3,
        seed=0,
        device=CPU,
        l1_reduce="sum",
        compile=compile,
    )


def _trainer(kind: str, compile: bool = False):
    return _shared(compile) if kind == "shared" else _exclusive(compile)


def test_compiling_on_a_cpu_is_refused_with_the_reason():
    with pytest.raises(DismiError, match="compile=true is for CUDA.*wrong gradient.*set compile to false"):
        _shared(compile=True)


def _assert_same_step(a, b, train, precompute=False):
    t1, g1, _ = _one_step(a, train, precompute)
    t2, g2, _ = _one_step(b, train, precompute)
    torch.testing.assert_close(t1, t2, rtol=1e-5, atol=1e-5)
    assert g1.keys() == g2.keys() and len(g1) > 10
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow  # graph capture and AOTAutograd of three step regions: about half a minute
@pytest.mark.parametrize("kind", ["shared", "exclusive"])
def test_the_compiled_step_equals_the_eager_step_and_trains(kind, monkeypatch, tiny_pairs):
    # The compiled path as CUDA runs it (whole forward passes captured, AOTAutograd's joint graph for the
    # backward), with eager kernels: what the CPU can check of it. CUDA graphs need a GPU.
    monkeypatch.setattr(training, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    train = DevicePairs(tiny_pairs(), TRAIN, CPU)
    eager, compiled = _trainer(kind, False), _trainer(kind, True)
    before = sum(torch._dynamo.utils.counters["stats"].values())
    for precompute in (True, False) if kind == "exclusive" else (False,):
        _assert_same_step(compiled, eager, train, precompute)
    assert sum(torch._dynamo.utils.counters["stats"].values()) > before  # dynamo did capture the step
    for trainer in (compiled, eager):  # the loop with optimizer updates: same parameters after it
        trainer.run(train, 4, 3)
    for (name, p1), p2 in zip(compiled.model.named_parameters(), eager.model.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(compiled.sums, eager.sums, rtol=1e-4, atol=1e-5)


# A reproducer of a torch bug, not a check of dismi: whether it shows depends on the CPU's instruction set
# and the thread count, so it runs only when asked. The refusal it justifies is tested above.
@pytest.mark.skipif(
    not os.environ.get("DISMI_UPSTREAM_TESTS"),
    reason="reproducer of a torch inductor bug on CPUs; DISMI_UPSTREAM_TESTS=1 runs it",
)
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="torch 2.13's inductor on CPU, one thread: a wrong "
    "gradient for the wide online classifier of the factor shape in the compiled shared step (up to "
    "6% off; aot_eager agrees with eager). When this passes, compiling may be allowed on CPUs again.",
)
def test_inductor_on_a_cpu_gives_the_eager_gradients_of_the_shared_step(tiny_pairs):
    # on one thread (conftest): with two the same step came out right on the development machine
    _check_inductor_gradients(tiny_pairs)


def _check_inductor_gradients(tiny_pairs) -> None:
    torch._dynamo.reset()
    train = DevicePairs(tiny_pairs(), TRAIN, CPU)
    eager = _shared(False)
    model = copy.deepcopy(eager.model)
    rows = train.draw(4, torch.Generator().manual_seed(0))
    x, classes = to_input(train.images[rows]), train.classes[rows]
    negatives = losses.other_in_view(4, torch.Generator().manual_seed(1), CPU)
    for fn in (eager.model, torch.compile(model, backend="inductor")):
        terms = fn(x, classes, negatives)
        (terms["total"] + terms["classifier"]).backward()
    for (name, p1), p2 in zip(eager.model.named_parameters(), model.parameters()):
        torch.testing.assert_close(p2.grad, p1.grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("kind", ["shared", "exclusive"])
def test_the_bf16_autocast_path_a_gpu_runs_trains_in_float32_weights_close_to_the_float32_step(
    kind, monkeypatch, tiny_pairs
):
    # What CUDA runs (bf16 autocast around every forward), run on the CPU, which supports bf16 autocast too.
    train, test = DevicePairs(tiny_pairs(), TRAIN, CPU), DevicePairs(tiny_pairs(), TEST, CPU)
    full, mixed = _trainer(kind), _trainer(kind)
    t_full, g_full, _ = _one_step(full, train, precompute=True)
    monkeypatch.setattr(Trainer, "autocast", lambda self: torch.autocast("cpu", dtype=torch.bfloat16))
    t_mixed, g_mixed, extra = _one_step(mixed, train, precompute=True)
    if kind == "exclusive":
        assert extra["s"].dtype == torch.bfloat16  # the table was built under autocast too
    assert t_mixed.dtype == torch.float32 and torch.isfinite(t_mixed).all()
    torch.testing.assert_close(t_mixed, t_full, rtol=0.05, atol=0.05)  # bf16 keeps 8 bits of mantissa
    assert not torch.equal(t_mixed, t_full)  # and the step did run under autocast
    assert g_mixed.keys() == g_full.keys()
    for name, g in g_mixed.items():
        assert g.dtype == torch.float32 and torch.isfinite(g).all(), name
    cosine = torch.nn.functional.cosine_similarity(
        torch.cat([g.flatten() for g in g_mixed.values()]), torch.cat([g.flatten() for g in g_full.values()]), dim=0
    )
    assert cosine > 0.95
    mixed.run(train, 4, 3)  # the loop with updates, then the per-log work
    assert torch.isfinite(mixed.sums).all()
    accuracy = mixed.online_accuracy(test)
    assert len(accuracy) == 12 and all(0.0 <= a <= 1.0 for a in accuracy.values())
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())
