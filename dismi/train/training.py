"""The training loop of both stages (report Sec. III): trainers and device-resident pairs (model files and
checkpoints: dismi.train.modelfile).

The objectives they minimise (eq. 5-10) are dismi.model.objectives' SharedModel and ExclusiveModel.

The loop keeps everything on the device: the split's images live there as uint8, batches and
negatives are drawn there by index from seeded device generators, loss terms are summed there,
and a NaN/inf is noted there; the host reads anything back only every `log_every` iterations.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from dismi.data.factors import FACTORS
from dismi.data.pairfile import TEST, TRAIN, PairData
from dismi.data.results import EARLIER, PROBES
from dismi.model import losses
from dismi.model.networks import MAP_SIZE, Encoder, seeded, to_input
from dismi.model.objectives import ExclusiveModel, SharedModel
from dismi.model.terms import TERMS
from dismi.model.terms.bottleneck import kl_per_dimension
from dismi.train.modelfile import cpu_state
from dismi.util import devices
from dismi.util.errors import DismiError

# torch.compile's backend. On CPUs inductor is refused: with torch 2.13 and one thread it computed a wrong
# gradient for an online classifier of the whole shared step, and with two the step ran slower
# (docs/performance.md); tests compile the same step with "aot_eager" (graph capture and AOTAutograd, eager
# kernels) to check the compiled path.
COMPILE_BACKEND = "inductor"
HEARTBEAT_SECONDS = 20.0  # the longest a training stage stays silent between its logs
EVAL_IMAGES = 512  # test images per online-accuracy measurement
SHARED_CODES_BATCH = 512  # images per forward pass when the exclusive stage tabulates the frozen encoder
# The logged name of each loss term: the eq. 2 MI estimates are maximised, so they are not "loss/"
MAXIMISED = ("global", "local")


def logged_name(term: str) -> str:
    """dvclive name of a trainer's term: mi/global, mi/local (maximised); loss/<term> (the rest)."""
    return f"mi/{term}" if term in MAXIMISED else f"loss/{term}"


# --------------------------------------------------------------------------- data on the device


class DevicePairs:
    """One split's pairs, its images resident on the device as uint8 and drawn there by index."""

    def __init__(self, data: PairData, split: int, device: torch.device):
        pairs, rows = data.pair_indices(split), data.image_rows(split)
        name = "train" if split == TRAIN else "test"
        if len(pairs) < 2:
            more = "n_pairs or test_fraction" if split == TEST else "n_pairs"
            raise DismiError(
                f"the pairs file has {len(pairs)} {name} pair(s); at least 2 are needed: "
                f"raise {more} and rerun the pairs stage"
            )
        self.images = torch.from_numpy(data.images[rows]).to(device)  # (M, 64, 64, 3) uint8
        self.classes = torch.from_numpy(data.classes[rows]).to(device)  # (M, 6) int64
        self.x = torch.from_numpy(np.searchsorted(rows, data.x[pairs])).to(device)  # (P,) rows of images
        self.y = torch.from_numpy(np.searchsorted(rows, data.y[pairs])).to(device)

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random pairs -> (2n,) rows of `images`: the n X images then their n Y partners."""
        pick = torch.randint(len(self.x), (n,), generator=generator, device=self.x.device)
        return torch.cat([self.x[pick], self.y[pick]])

    def draw_groups(self, n: int, neighbours: torch.Tensor, group: int, generator: torch.Generator) -> torch.Tensor:
        """n pairs in groups of `group`: n / group random anchor pairs, each followed by its first group - 1
        `neighbours` (P, k) -> (2n,) rows of `images`, X images then Y, group after group in each half."""
        anchors = torch.randint(len(self.x), (n // group,), generator=generator, device=self.x.device)
        pick = torch.cat([anchors[:, None], neighbours[anchors, : group - 1]], 1).flatten()  # (n,)
        return torch.cat([self.x[pick], self.y[pick]])

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(len(self.images), (n,), generator=generator, device=self.images.device)
        return self.images[rows], self.classes[rows]


# --------------------------------------------------------------------------- trainers


def _stage_seeds(seed: int, stage: int) -> list[int]:
    # Independent streams for init, training batches and test batches; `stage` keeps the exclusive
    # encoder from starting as a copy of the shared one.
    return np.random.SeedSequence([seed, stage]).generate_state(3).tolist()


def _adam(params, lr: float) -> torch.optim.Adam:
    # fused: one kernel for all parameters, on the CPU as on CUDA (docs/performance.md)
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), fused=True)


def _next_multiple(i: int, k: int) -> int:
    return (i // k + 1) * k


class Trainer:
    """The loop shared by both stages; a subclass provides the model, optimizers and `step`."""

    terms: tuple[str, ...]
    representation: str  # "shared" | "exclusive": names the online accuracies
    bf16: bool = True  # autocast to bfloat16 on CUDA (`bench --fp32` turns it off to compare)

    def __init__(self, model: nn.Module, seeds: list[int], device: torch.device, compile: bool):
        self.device = device
        self.model = model.to(device, memory_format=torch.channels_last)  # as to_input's images
        self.batch_gen = torch.Generator(device).manual_seed(seeds[1])
        self.eval_gen = torch.Generator(device).manual_seed(seeds[2])
        self.iteration = 0
        # Called with the iteration every HEARTBEAT_SECONDS between logs, so a run is never silent long;
        # reads nothing back from the device.
        self.heartbeat: Callable[[int], None] | None = None
        self._next_beat = time.monotonic() + HEARTBEAT_SECONDS
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}  # iteration -> encoder weights (CPU)
        self.sums = torch.zeros(len(self.terms), device=device)  # per-term sums since the last log
        self.count = 0
        self.first_bad = torch.full((len(self.terms),), -1, dtype=torch.long, device=device)
        # online_earlier: per-factor hits of the earlier protocol's classifiers on training batches since the
        # last log (their accuracy is the mean over the interval, as the earlier implementations logged it)
        self.earlier = hasattr(self.model, "classifiers_earlier")
        self.earlier_hits = torch.zeros(len(FACTORS), device=device)
        self.earlier_count = 0
        if compile and device.type == "cpu" and COMPILE_BACKEND == "inductor":
            raise DismiError(
                "compile=true is for CUDA devices: on CPUs torch's inductor ran the step slower and "
                "computed a wrong gradient (docs/performance.md); set compile to false"
            )
        self.compiled = compile

    def _compile(self, fn: Callable) -> Callable:
        """`fn` compiled when the trainer compiles (whole forward passes, so the statistics networks'
        embed/score calls are inside; AOTAutograd compiles their backward), else `fn` itself. On CUDA
        with CUDA graphs: one replay instead of a step's many small kernel launches (docs/performance.md).
        The modules are not touched: parameter names, hence checkpoints, stay the same."""
        if not self.compiled:
            return fn
        cuda_graphs = self.device.type == "cuda" and COMPILE_BACKEND == "inductor"
        return torch.compile(fn, backend=COMPILE_BACKEND, mode="reduce-overhead" if cuda_graphs else None)

    def _begin_step(self) -> None:
        if self.compiled and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # last step's graph outputs are no longer read

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda" and self.bf16)

    def _main_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the main optimizer minimises: the objective and the online classifiers' losses (theirs reach
        only them: detached codes). Notes the earlier protocol's training-batch hits when it is on."""
        loss = terms["total"] + terms["classifier"]
        if self.earlier:
            loss = loss + terms["classifier_earlier"]
            self.earlier_hits += terms["hits_earlier"]
            self.earlier_count += 1
        return loss

    def _backward(self, optimizer: str, loss: torch.Tensor, update: bool) -> None:
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if update:
            opt.step()

    def step(self, images: torch.Tensor, classes: torch.Tensor, *, update: bool = True, **precomputed) -> torch.Tensor:
        """One iteration on 2B images (X then Y) -> (len(terms),) detached loss terms.

        update=False: forward and backward only, what `bench` compares the loop against.
        `precomputed`: what `precomputed(train, rows)` gave for these images.
        """
        raise NotImplementedError

    def precomputed(self, train: DevicePairs, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inputs of `step` that depend only on the images and are computed once per split, looked up
        for `rows`; none by default."""
        return {}

    # -- the loop ---------------------------------------------------------------------------

    def run(self, train: DevicePairs, batch_size: int, n: int) -> None:
        """n iterations, nothing read back to the host."""
        for _ in range(n):
            if self.heartbeat is not None and time.monotonic() >= self._next_beat:
                self._next_beat = time.monotonic() + HEARTBEAT_SECONDS
                self.heartbeat(self.iteration)
            rows = self.draw(train, batch_size)  # (2B,)
            terms = self.step(train.images[rows], train.classes[rows], **self.precomputed(train, rows))
            self.iteration += 1
            self.sums += terms
            self.count += 1
            self.first_bad = torch.where(~torch.isfinite(terms) & (self.first_bad < 0), self.iteration, self.first_bad)

    def draw(self, train: DevicePairs, batch_size: int) -> torch.Tensor:
        """The next batch: (2B,) rows of train.images, X images then their Y partners."""
        return train.draw(batch_size, self.batch_gen)

    def fit(
        self,
        data: PairData,
        *,
        iters: int,
        batch_size: int,
        log_every: int,
        checkpoint_every: int,
        log: Callable[[int, dict[str, float]], None],
        save: Callable[[dict], None],
        snapshot_every: int = 0,
    ) -> None:
        """Train from `self.iteration` to `iters`: log(iteration, metrics) every `log_every` and at the
        end, save(state) every `checkpoint_every` and at the end; a NaN/inf raises before either.

        snapshot_every > 0 also keeps the encoder's weights every `snapshot_every` iterations in
        `self.snapshots` (and in the checkpoint), so evaluation can draw held-out accuracy against
        iterations from one run.
        """
        train, test = DevicePairs(data, TRAIN, self.device), DevicePairs(data, TEST, self.device)
        every = [k for k in (log_every, checkpoint_every, snapshot_every) if k > 0]
        while self.iteration < iters:
            stop = min(iters, *(_next_multiple(self.iteration, k) for k in every))
            self.run(train, batch_size, stop - self.iteration)
            self._raise_if_nonfinite()
            if snapshot_every > 0 and self.iteration % snapshot_every == 0 and self.iteration < iters:
                self.snapshots[self.iteration] = cpu_state(self.model.encoder)
            if self.iteration % log_every == 0 or self.iteration == iters:
                log(self.iteration, self.mean_terms() | self.online_accuracy(test) | self._extra_metrics())
            if self.iteration % checkpoint_every == 0 or self.iteration == iters:
                save(self.state_dict())

    def _raise_if_nonfinite(self) -> None:
        bad = [(it, name) for it, name in zip(self.first_bad.tolist(), self.terms) if it >= 0]
        if bad:
            # `total` is the sum of the others: name the term that went first.
            it, _, name = min((it, name == "total", name) for it, name in bad)
            raise DismiError(
                f"{logged_name(name)} became nan or inf at iteration {it}: lower the learning rate "
                "or the weights (the last good checkpoint is kept)"
            )

    def mean_terms(self) -> dict[str, float]:
        """Each term's mean since the last call, by its logged name; starts the next interval."""
        means = (self.sums / self.count).tolist()
        self.sums.zero_()
        self.count = 0
        return {logged_name(name): m for name, m in zip(self.terms, means)}

    @torch.no_grad()
    def online_accuracy(self, test: DevicePairs) -> dict[str, float]:
        """Accuracy of each online classifier on a batch of test images, networks in eval mode."""
        images, classes = test.sample(EVAL_IMAGES, self.eval_gen)
        self.model.eval()
        try:
            with self.autocast():
                rep = self.model.encoder(to_input(images))[0]  # (n, dim): S or E
                hits = {
                    probe: (bank(rep).argmax(2) == classes).float().mean(0)  # (factors,)
                    for probe, bank in self.model.classifiers.items()
                }
        finally:
            self.model.train()
        return {
            f"{PROBES[probe].online_prefix}/{self.representation}/{name}": a
            for probe, h in hits.items()
            for name, a in zip(FACTORS, h.tolist())
        }

    def _extra_metrics(self) -> dict[str, float]:
        """Logged beside the terms: the earlier protocol's accuracies on the interval's training batches (when
        on), acc_earlier/<representation>/<factor>."""
        if not self.earlier:
            return {}
        hits = (self.earlier_hits / max(self.earlier_count, 1)).tolist()
        self.earlier_hits.zero_()
        self.earlier_count = 0
        return {f"{EARLIER.online_prefix}/{self.representation}/{name}": a for name, a in zip(FACTORS, hits)}

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generators": {"batch": self.batch_gen.get_state(), "eval": self.eval_gen.get_state()},
            "sums": self.sums,
            "count": self.count,
            "snapshots": {str(i): w for i, w in self.snapshots.items()},
        } | self._extra_state()

    def _extra_state(self) -> dict:
        """State of the options that are on (absent when off)."""
        return {"earlier": (self.earlier_hits, self.earlier_count)} if self.earlier else {}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = state["iteration"]
        self.model.load_state_dict(state["model"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.batch_gen.set_state(state["generators"]["batch"])
        self.eval_gen.set_state(state["generators"]["eval"])
        self.sums.copy_(state["sums"])
        self.count = state["count"]
        self.snapshots = {int(i): w for i, w in state["snapshots"].items()}
        if self.earlier:
            self.earlier_hits.copy_(state["earlier"][0])
            self.earlier_count = state["earlier"][1]


class SharedTrainer(Trainer):
    terms = ("total", "global", "local", "l1", "classifier")
    representation = "shared"

    def __init__(
        self,
        *,
        width: int,
        dim: int,
        alpha: float,
        beta: float,
        gamma: float,
        switched: bool,
        lr: float,
        seed: int,
        device: torch.device,
        l1_reduce: str = "mean",
        compile: bool = False,
        online_earlier: bool = False,
    ):
        seeds = _stage_seeds(seed, 0)
        if online_earlier:
            self.terms = type(self).terms + ("classifier_earlier",)
        model = seeded(
            lambda: SharedModel(
                width,
                dim,
                alpha=alpha,
                beta=beta,
                gamma=gamma,
                switched=switched,
                l1_reduce=l1_reduce,
                online_earlier=online_earlier,
            ),
            torch.Generator().manual_seed(seeds[0]),
        )
        super().__init__(model, seeds, device, compile)
        # One optimizer: the classifiers see detached codes, so their loss only reaches them.
        self.optimizers = {"main": _adam(self.model.parameters(), lr)}
        self._terms = self._compile(self.model)

    def step(self, images, classes, *, update=True):
        self._begin_step()
        x = to_input(images)  # (2B, 3, 64, 64)
        negatives = losses.other_in_view(len(images) // 2, self.batch_gen, self.device)
        with self.autocast():
            terms = self._terms(x, classes, negatives)
        self._backward("main", self._main_loss(terms), update)
        return torch.stack([terms[k].detach().float() for k in self.terms])


class ExclusiveTrainer(Trainer):
    """The exclusive stage's loop. `terms`, keyword arguments named as dismi.model.terms.TERMS' keys, each the
    weight of an independence term, built when its weight is > 0 (`lambda_adv`, the paper's adversary, at 0
    too: its D is trained and logged, the paper's ablation).
    `negatives`: whose representations the MI terms score each feature map with as negatives (NEGATIVES):
    "batch" another image of the batch (the paper), "partner" the pair's other image (losses.partner_rows),
    "conditional" the other images of a group of `neighbours` + 1 pairs, an anchor pair and its nearest
    train pairs by the frozen S, scored by InfoNCE (losses.statistics_infonce): the negatives then share the
    shared factors, so the MI terms pay E for what tells images of the same shape, scale and orientation
    apart, every hue, and nothing for the shared factors; "kernel" the other images of a group of as many
    random pairs, each negative weighted by a kernel on the frozen S (losses.kernel_log_weights): the same
    conditioning, at the same cost, without the search for neighbours. `encoder`: an exclusive encoder to train instead
    of Table I's (same out_dim and 8 * width map channels; tests plant a dependence with a small one)."""

    representation = "exclusive"

    def __init__(
        self,
        *,
        shared: Encoder,
        width: int,
        dim: int,
        alpha: float,
        beta: float,
        lr: float,
        seed: int,
        device: torch.device,
        compile: bool = False,
        negatives: str = "batch",
        neighbours: int = 7,
        online_earlier: bool = False,
        encoder: nn.Module | None = None,
        **terms: float,
    ):
        if set(terms) - set(TERMS):  # a keyword, not a value: the boundary checked the values
            raise TypeError(f"term weights are among {sorted(TERMS)}; got {sorted(terms)}")
        seeds = _stage_seeds(seed, 1)
        model = seeded(
            lambda: ExclusiveModel(
                shared.width,
                shared.out_dim,
                width,
                dim,
                alpha=alpha,
                beta=beta,
                terms=lambda s_dim, e_dim: [
                    TERMS[k](s_dim, e_dim, weight=w) for k, w in terms.items() if w > 0 or TERMS[k].measured_at_zero
                ],
                online_earlier=online_earlier,
            ),
            torch.Generator().manual_seed(seeds[0]),
        )
        if encoder is not None:
            model.encoder = encoder
        self.terms = (
            ("total", "global", "local")
            + tuple(log for term in model.terms for log in term.logs())
            + ("classifier",)
            + (("classifier_earlier",) if online_earlier else ())
        )
        super().__init__(model, seeds, device, compile)
        self.shared = shared.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)
        self._codes_for: DevicePairs | None = None  # the split `_codes` were computed for
        self._codes: tuple[torch.Tensor, torch.Tensor] | None = None
        self.negatives, self.group = negatives, neighbours + 1
        self._fixed_rows: dict[int, torch.Tensor] = {}  # partner or group rows by batch size
        self._neighbours_for: DevicePairs | None = None  # the split `_neighbours` were found in
        self._neighbours: torch.Tensor | None = None
        # A noisy term's channel: KL per coordinate of E summed since the last log (logged as kl_dim/<j>)
        self.noisy = any(term.noisy for term in self.model.terms)
        self.kl_sums, self.kl_count = torch.zeros(self.model.encoder.out_dim, device=device), 0
        own = [t for t in self.model.terms if t.own_log]
        own_params = {p for t in own for p in t.parameters()}
        self.optimizers = {"main": _adam([p for p in self.model.parameters() if p not in own_params], lr)}
        self.optimizers |= {t.own_log: _adam(t.parameters(), lr) for t in own}
        # Compiled regions: the encoder, each term's own loss (its networks learn between the encoder's forward
        # and the encoder's loss), the objective.
        self._encode = self._compile(self.model.encoder)
        for term in self.model.terms:
            term.compile_with(self._compile)
        self._terms = self._compile(self.model)

    @torch.no_grad()
    def _shared_codes(self, images: torch.Tensor, maps: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frozen shared encoder on uint8 images, in batches -> S (N, shared_dim), and C_sh (N, 8w_sh, 5, 5)
        when `maps`."""
        s_all, f_all = [], []
        with self.autocast():
            for i in range(0, len(images), SHARED_CODES_BATCH):
                s, fmap = self.shared(to_input(images[i : i + SHARED_CODES_BATCH]))
                s_all.append(s)
                f_all.append(fmap if maps else fmap[:0])
        return torch.cat(s_all), (torch.cat(f_all) if maps else None)

    def precomputed(self, train, rows):
        """S and C_sh of the batch, looked up in a table of the whole split computed once: the shared
        encoder is frozen and in eval mode, so an image's codes never change, and a lookup replaces a
        forward pass of a whole encoder per step. When the table would take more than
        `devices.cache_budget` bytes, nothing: the step runs the encoder itself."""
        if self._codes_for is not train:
            self._codes_for, self._codes = train, None
            n, w = len(train.images), self.shared.width
            per_image = 4 * (self.shared.out_dim + 8 * w * MAP_SIZE * MAP_SIZE)  # float32 bytes
            if n * per_image <= devices.cache_budget(self.device):
                self._codes = self._shared_codes(train.images)
        if self._codes is None:
            return {}
        s, fmap_sh = self._codes
        return {"s": s[rows], "fmap_sh": fmap_sh[rows]}

    def neighbours(self, train: DevicePairs) -> torch.Tensor:
        """(P, neighbours) the train pairs nearest to each by the frozen S of their X image, found once."""
        if self._neighbours_for is not train:
            s = (
                self._codes[0]
                if self._codes_for is train and self._codes
                else self._shared_codes(train.images, False)[0]
            )
            self._neighbours_for, self._neighbours = train, nearest(s[train.x].float(), self.group - 1)
        return self._neighbours

    def draw(self, train, batch_size):
        if self.negatives != "conditional":  # "kernel": groups of consecutive random pairs
            return super().draw(train, batch_size)
        return train.draw_groups(batch_size, self.neighbours(train), self.group, self.batch_gen)

    def _negatives(self, n_pairs: int) -> torch.Tensor:
        if self.negatives == "batch":  # drawn afresh for every batch
            return losses.other_in_view(n_pairs, self.batch_gen, self.device)
        if n_pairs not in self._fixed_rows:  # the same rows for every batch of this size
            self._fixed_rows[n_pairs] = (
                losses.partner_rows(n_pairs, self.device)
                if self.negatives == "partner"
                else losses.group_candidates(n_pairs, self.group, self.device)  # conditional or kernel
            )
        return self._fixed_rows[n_pairs]

    def step(self, images, classes, *, update=True, s=None, fmap_sh=None):
        """`s`, `fmap_sh`: the frozen shared encoder's codes of `images`, when looked up already."""
        self._begin_step()
        x = to_input(images)  # (2B, 3, 64, 64)
        negatives = self._negatives(len(images) // 2)  # (2B,) or (2B, 2 * group)
        with self.autocast():
            if s is None:
                with torch.no_grad():
                    s, fmap_sh = self.shared(x)  # (2B, shared_dim), (2B, 8w_sh, 5, 5)
            e, fmap_ex = self._encode(x)
        # Alternate: each term's networks learn first, then the encoder plays against them. The encoder's
        # backward also leaves gradients in them; their next zero_grad discards them.
        own = {}
        for term in self.model.terms:
            if term.own_log:
                with self.autocast():
                    own[term.own_log] = term.own_loss(s, e.detach(), self.batch_gen)
                self._backward(term.own_log, own[term.own_log], update)
        noise = None
        if self.noisy:
            noise = torch.randn(e.shape, generator=self.batch_gen, device=self.device, dtype=e.dtype)
            self.kl_sums += kl_per_dimension(e.detach())
            self.kl_count += 1
        with self.autocast():
            weights = losses.kernel_log_weights(s, negatives) if self.negatives == "kernel" else None
            terms = self._terms(s, fmap_sh, e, fmap_ex, classes, negatives, noise, weights)
        self._backward("main", self._main_loss(terms), update)
        terms |= own
        return torch.stack([terms[k].detach().float() for k in self.terms])

    def _extra_metrics(self):
        extra = super()._extra_metrics()
        if self.noisy:
            kl = (self.kl_sums / max(self.kl_count, 1)).tolist()
            self.kl_sums.zero_()
            self.kl_count = 0
            extra |= {f"kl_dim/{j:02d}": v for j, v in enumerate(kl)}
        return extra

    def _extra_state(self):
        return super()._extra_state() | ({"kl": (self.kl_sums, self.kl_count)} if self.noisy else {})

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if self.noisy:
            self.kl_sums.copy_(state["kl"][0])
            self.kl_count = state["kl"][1]


def nearest(codes: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """(P, d) codes -> (P, k) rows of the k nearest other codes of each, by Euclidean distance, in chunks of
    rows (a P x P distance matrix would not fit)."""
    if k >= len(codes):
        raise DismiError(f"neighbours_ex is {k} but the train split has {len(codes)} pairs: lower neighbours_ex")
    sq = codes.pow(2).sum(1)
    out = []
    for i in range(0, len(codes), chunk):
        d2 = sq[i : i + chunk, None] + sq[None, :] - 2 * codes[i : i + chunk] @ codes.T  # (chunk, P)
        d2[torch.arange(len(d2)), torch.arange(i, i + len(d2))] = float("inf")  # not itself
        out.append(d2.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)
