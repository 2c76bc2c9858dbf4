"""Progress bars that suit where they are read: tqdm's redrawn bar on a terminal; anywhere else (`dvc queue
logs`, a Slurm or CI log: a file, not a terminal) a plain line every 30 s and one at the end, with no
carriage returns, which such logs keep as noise (every redraw, joined into one endless line)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
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
    return tqdm(iterable, file=_Lines(stream), ascii=True, ncols=100, **kwargs)
