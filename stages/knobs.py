"""Not a stage: every knob as a Markdown table, from its one declaration (stages/params.py) and params.yaml;
or, with --protocol, the `dvc exp run -S` flags of a named parameter set."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import params as P


def table(values: dict) -> str:
    report = values | P.protocol("report")
    lines = [
        "| key | symbol | params.yaml | report | paper | allowed | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    # In params.yaml's order, then any knob the file lacks.
    for key in [*(k for k in values if k in P.KNOBS), *(k for k in P.KNOBS if k not in values)]:
        k = P.KNOBS[key]
        paper = "-" if k.paper is None else k.paper
        lines.append(
            f"| `{key}` | {k.symbol or '-'} | {values.get(key, '(missing)')} | {report.get(key, '(missing)')} "
            f"| {paper} | {k.describe()} | {k.meaning} |"
        )
    return "\n".join(lines) + "\n"


def flags(name: str, values: dict) -> str:
    """The protocol's overrides of `values` as `-S key=value` flags, in declaration order."""
    overrides = {k: v for k, v in P.protocol(name).items() if values.get(k) != v}
    return " ".join(f"-S {key}={_yaml(overrides[key])}" for key in P.KNOBS if key in overrides)


def _yaml(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def main(
    params: Path = typer.Option(Path("params.yaml"), help="Params file whose values to show."),
    protocol: str = typer.Option(None, help="print this parameter set's -S flags instead: report or paper"),
) -> None:
    values = P.read(params)
    if protocol:
        typer.echo(flags(protocol, values))
    else:
        typer.echo(table(values), nl=False)
