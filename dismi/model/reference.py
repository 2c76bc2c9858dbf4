"""The speed baseline: one shared-stage step (forward, backward, Adam) of the paper's networks written
plainly, as the earlier implementations compute it (NCHW tensors, a conv bias before each BatchNorm, the
local statistics network as 1x1 convolutions over the tiled representation, separate joint and shuffled
passes, Adam's per-tensor loop, default memory allocator).

Not dismi's training code: `python -m stages bench --reference` runs it in a fresh process beside the
real loop, so that speed-ups are quoted against the same plain step on the same machine in the same run.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn


def _encoder(w: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, w, 4, 1),
        nn.LeakyReLU(),
        nn.Conv2d(w, 2 * w, 4, 2),
        nn.BatchNorm2d(2 * w),
        nn.LeakyReLU(),
        nn.Conv2d(2 * w, 4 * w, 4, 2),
        nn.BatchNorm2d(4 * w),
        nn.LeakyReLU(),
        nn.Conv2d(4 * w, 8 * w, 4, 2),
        nn.BatchNorm2d(8 * w),
        nn.LeakyReLU(),
    )


def seconds_per_step(width: int = 64, batch: int = 64, iters: int = 5, warmup: int = 3, seed: int = 0) -> float:
    """Median wall seconds of `iters` plain steps on `batch` random pairs, after `warmup` steps."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the plain code initialises from the global RNG, as the originals did
    dim, hidden = 64, 8 * width
    encoder, head = _encoder(width), nn.Linear(25 * 8 * width, dim)
    global_net = nn.Sequential(
        nn.Linear(25 * 8 * width + dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
    )
    local_net = nn.Sequential(
        nn.Conv2d(8 * width + dim, hidden, 1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(),
        nn.Conv2d(hidden, 1, 1),
    )
    x = torch.rand(2 * batch, 3, 64, 64, generator=g)
    params = [p for m in (encoder, head, global_net, local_net) for p in m.parameters()]
    opt = torch.optim.Adam(params, 1e-4)

    def loss() -> torch.Tensor:
        fmap = encoder(x)
        s = head(fmap.flatten(1))
        cross = torch.cat([s[batch:], s[:batch]])
        shuffled = torch.cat([fmap[1:], fmap[:1]])
        tile = cross[:, :, None, None].expand(-1, -1, 5, 5)
        t_joint = global_net(torch.cat([fmap.flatten(1), cross], 1))
        t_marg = global_net(torch.cat([shuffled.flatten(1), cross], 1))
        l_joint = local_net(torch.cat([fmap, tile], 1))
        l_marg = local_net(torch.cat([shuffled, tile], 1))
        return (
            F.softplus(-t_joint).mean()
            + F.softplus(t_marg).mean()
            + F.softplus(-l_joint).mean()
            + F.softplus(l_marg).mean()
            + 0.1 * (s[:batch] - s[batch:]).abs().mean()
        )

    def step() -> None:
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
