"""The speed paths compute the same step: each optimisation the stages use is compared, one step's loss
terms and gradients, with the same step computed without it (docs/performance.md lists them)."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO, tiny_pairs
from dismi import devices
from dismi.networks import Encoder, seeded, to_input
from dismi.pairfile import TRAIN
from dismi.training import DevicePairs, ExclusiveTrainer

torch.set_num_threads(1)
CPU = torch.device("cpu")


def _exclusive() -> ExclusiveTrainer:
    shared = seeded(lambda: Encoder(4, 8), torch.Generator().manual_seed(5)).eval()
    return ExclusiveTrainer(shared=shared, width=4, dim=8, alpha=0.5, beta=1.0, lambda_adv=0.5, lr=1e-3, seed=0,
                            device=CPU)


def _one_step(trainer: ExclusiveTrainer, train: DevicePairs, precompute: bool):
    rows = train.draw(4, torch.Generator().manual_seed(0))
    extra = trainer.precomputed(train, rows) if precompute else {}
    terms = trainer.step(train.images[rows], train.classes[rows], update=False, **extra)
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return terms, grads, extra


def test_the_exclusive_step_on_tabulated_shared_codes_equals_the_step_that_runs_the_shared_encoder():
    train = DevicePairs(tiny_pairs(), TRAIN, CPU)
    looked_up, computed = _exclusive(), _exclusive()
    t1, g1, extra = _one_step(looked_up, train, precompute=True)
    t2, g2, none = _one_step(computed, train, precompute=False)
    assert set(extra) == {"s", "fmap_sh"} and none == {}  # the table was used, and only on one side
    torch.testing.assert_close(t1, t2, rtol=1e-5, atol=1e-6)
    assert g1.keys() == g2.keys() and len(g1) > 10
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_table_is_built_once_per_split_and_not_at_all_over_the_memory_budget(monkeypatch):
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
from dismi import allocator
from dismi.training import SharedTrainer
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
    out = {mode: json.loads(subprocess.run([sys.executable, "-c", STEP, mode], cwd=REPO, capture_output=True,
                                           text=True, check=True).stdout)
           for mode in ("default", "keep")}
    assert out["keep"] == out["default"]  # bit for bit: the same operations on the same values


def test_in_place_activations_give_the_same_codes_and_gradients():
    x = to_input(torch.randint(0, 256, (6, 64, 64, 3), generator=torch.Generator().manual_seed(0),
                               dtype=torch.uint8))
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
