"""Not a stage: push DVC's run-cache to the DVC remote with every file it names, `cache: false` outputs too.

The run-cache (DVC's run history: which stage configuration made which outputs) is what lets another
machine restore a stage trained here for another experiment instead of training it again. `dvc push
--run-cache` (and `dvc exp push --run-cache`) sends the history and the DVC-tracked outputs, but not
the files of `cache: false` outputs, which the history names as well: dismi's dvclive metrics and
curves, kept in git. Without them the other machine's restore fails ("Some of the cache files do not
exist neither locally nor on remote") and it trains the stage again. This sends those files too.
"""

from __future__ import annotations

from pathlib import Path

import typer

from dismi.util.errors import DismiError


def push(remote: str | None = None) -> tuple[int, int]:
    """Push every run-cache entry of this repository and the files they name -> (entries, files sent)."""
    from dvc.repo import Repo

    try:
        with Repo() as repo:
            runs = [(p.parent.name, p.name) for p in sorted(Path(repo.stage_cache.cache_dir).glob("*/*/*"))]
            repo.stage_cache.push(remote)
            sent = 0
            for objs in repo.stage_cache.get_used_objs(runs).values():
                result = repo.cloud.push(objs, remote=remote)
                if result.failed:
                    raise DismiError(
                        f"{len(result.failed)} file(s) of the run-cache could not be pushed "
                        f"(first: {next(iter(result.failed))}): check the DVC remote"
                    )
                sent += len(result.transferred)
    except DismiError:
        raise
    except Exception as e:  # DVC's own: no repository, no remote, ...
        raise DismiError(
            f"pushing the run-cache failed ({type(e).__name__}: {e}): run in the repository, "
            "with a DVC remote (dvc remote add -d ...)"
        ) from None
    return len(runs), sent


def main(remote: str = typer.Option(None, "-r", "--remote", help="DVC remote (default: the default remote)")) -> None:
    entries, sent = push(remote)
    typer.echo(f"run-cache: {entries} entries pushed with their files ({sent} sent, the rest already there)")
