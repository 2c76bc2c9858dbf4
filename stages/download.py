"""Stage 1: get Shapes3D into one HDF5 file with the official layout, downloaded or rendered offline.

A download goes through the per-user cache (dismi.data.download.fetch_cached: DISMI_CACHE, else
~/.cache/dismi): the verified file is linked (else copied) into place, so rerunning the stage after a code
edit takes no network. A file:// URL is read directly (it is a local copy already).
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from pathlib import Path

import typer

from dismi.data.download import download, fetch_cached
from dismi.data.shapes3d import SHAPES3D_SHA256, SHAPES3D_SIZE, validate_file
from dismi.synthetic import render
from dismi.util.files import guard_outputs
from stages import params as P

_WAYS_OUT = (
    "copy 3dshapes.h5 onto this machine and run `dvc exp run -S shapes3d_url=file:///path/to/3dshapes.h5`, "
    "or render the dataset offline with `dvc exp run -S dataset=synthetic`"
)


def _local_file(url: str) -> Path | None:
    """The path a file:// URL names (as dismi.data.download opens it); None for http(s)."""
    parts = urllib.parse.urlsplit(url)
    return Path(urllib.request.url2pathname(parts.path)) if parts.scheme == "file" else None


def main(
    out: Path = typer.Option(..., help="Shapes3D HDF5 file to write."),
    params: Path = typer.Option(Path("params.yaml"), help="Params file."),
) -> None:
    # Params first: a file:// URL names an input that the guard must not delete.
    cfg = P.Download.load(params)
    inputs = [params]
    source = _local_file(cfg.url) if cfg.dataset == "shapes3d" else None
    if source is not None:
        inputs.append(source)
    guard_outputs(inputs, [out])  # as under DVC: a failed run leaves no older file looking current
    try:
        how = ""
        if cfg.dataset == "shapes3d" and source is not None:
            download(cfg.url, out, size=SHAPES3D_SIZE, sha256=SHAPES3D_SHA256, ways_out=_WAYS_OUT)
        elif cfg.dataset == "shapes3d":
            cached, how = fetch_cached(
                cfg.url, out, size=SHAPES3D_SIZE, sha256=SHAPES3D_SHA256, name="3dshapes.h5", ways_out=_WAYS_OUT
            )
            how = f" ({how} from {cached})"
        else:
            render.write_synthetic(out, grid=cfg.grid)
        classes = validate_file(out)
    except BaseException:
        out.unlink(missing_ok=True)  # an interrupted render or a file off the contract must not look done
        raise
    typer.echo(f"{out}: {len(classes)} images{how}")
