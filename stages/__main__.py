"""`python -m stages COMMAND`: the six DVC stages, plus the export, bench, results, offline-plots, push-run-cache and
knobs helpers."""

import sys

import typer

from dismi.util.errors import DismiError
from stages import (
    bench,
    download,
    evaluate,
    export,
    knobs,
    offline_plots,
    pairs,
    plot,
    results,
    run_cache,
    train_exclusive,
    train_shared,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="dismi pipeline stages (run them through `dvc repro`).",
)
app.command("download", help="Stage 1: get Shapes3D (download or render) into one HDF5 file.")(download.main)
app.command("pairs", help="Stage 2: build the train/test pair dataset.")(pairs.main)
app.command("train-shared", help="Stage 3: learn the shared representation S (eq. 5-7).")(train_shared.main)
app.command("train-exclusive", help="Stage 4: learn the exclusive representation E (eq. 8-10).")(train_exclusive.main)
app.command("evaluate", help="Stage 5: held-out probe accuracies, distance to ideal, retrieval.")(evaluate.main)
app.command("plot", help="Stage 6: PNG figures under metrics/plots.")(plot.main)
app.command(
    "export", help="Not a stage: the S and E codes of the train and test images, with their factor classes, to a .npz."
)(export.main)
app.command("bench", help="Not a stage: iterations/s of both training loops vs bare forward+backward.")(bench.main)
app.command(
    "results",
    help="Not a stage: mean ± std over seeds, lambda_adv curve, ablations, from the DVC "
    "experiments of every commit, grouped by name (<group>-seed<k>) or by params "
    "but the seed.",
)(results.main)
app.command(
    "offline-plots",
    help="Not a stage: a `dvc plots` page with Vega bundled, set as plots.html_template: plots drawn with no network.",
)(offline_plots.main)
app.command(
    "push-run-cache",
    help="Not a stage: DVC's run-cache to the DVC remote with every file it names "
    "(cache: false outputs too), so other machines restore what ran here.",
)(run_cache.main)
app.command("knobs", help="Not a stage: every param with its paper symbol, value, report default and meaning.")(
    knobs.main
)


def main() -> None:
    try:
        app()
    except DismiError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
