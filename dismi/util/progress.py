"""Progress, one mechanism for every stage: tqdm's redrawn bar on a terminal; anywhere else (`dvc queue
logs`, a Slurm or CI log: a file, not a terminal) plain lines with no carriage returns, which such logs keep
as noise (every redraw, joined into one endless line). `bar` wraps a loop (a line every LOG_INTERVAL s in a
log); `phase` is reported to by a callback, each report a line in a log (a training log, a probe's epoch)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

LOG_INTERVAL = 20.0  # seconds between lines in a log file: no stage silent for 30 s


def duration(seconds: float) -> str:
    """4.2 -> '4 s', 190 -> '3 min 10 s', 7500 -> '2 h 5 min': time left or taken, in progress lines."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class _Lines:
    """The stream tqdm writes to when it is no terminal: each redraw ("\\r" + status) becomes one line."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable: Iterable | None = None, *, file: TextIO | None = None, **kwargs: Any) -> tqdm:
    """tqdm(iterable, **kwargs) on a terminal; on anything else, lines at most every LOG_INTERVAL seconds."""
    stream = file if file is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if kwargs.get("disable") or (isatty is not None and isatty()):
        return tqdm(iterable, file=stream, **kwargs)
    kwargs["mininterval"] = max(kwargs.get("mininterval", 0.1), LOG_INTERVAL)
    return tqdm(iterable, file=_Lines(stream), **{"ascii": True, "ncols": 100} | kwargs)


# A phase's line in a log: what is done, what it says, speed, time left and time so far
PHASE_LINE = "{desc} {n_fmt}/{total_fmt}{postfix}, {rate_fmt}, {remaining} left ({elapsed} so far)"


@contextlib.contextmanager
def phase(
    desc: str, total: int, unit: str, *, initial: int = 0, file: TextIO | None = None
) -> Iterator[Callable[..., None]]:
    """A bar over `total` units that its task reports to: `step(done, detail="")` moves it to `done` of them
    and shows `detail`. Every report is shown (on a terminal, a redraw; in a log, one line), so a task
    reports as often as it wants lines: per log or heartbeat of a training stage, per epoch of a probe."""
    log = not getattr(file if file is not None else sys.stdout, "isatty", lambda: False)()
    with bar(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        file=file if file is not None else sys.stdout,
        bar_format=PHASE_LINE if log else None,
        delay=1e-9,  # no line before the first report
        mininterval=float("inf"),  # lines at reports only: never one of tqdm's own between them,
        miniters=1,  # nor one from its monitor thread, which redraws a bar whose miniters it raised
        leave=not log,  # in a log, the last report was the last line
        **({"ncols": 1000} if log else {}),  # a line, however long its detail
    ) as b:

        def step(done: int, detail: str = "") -> None:
            b.set_postfix_str(detail, refresh=False)
            b.update(done - b.n)
            b.refresh()

        yield step
