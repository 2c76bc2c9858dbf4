"""Not a stage: every knob as a Markdown table, from its one declaration (stages/params.py) and params.yaml."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from stages import params as P


def table(values: dict) -> str:
    head = "| key | symbol | params.yaml | report (declared default) | allowed | meaning |"
    lines = [head, "|---|---|---|---|---|---|"]
    # In params.yaml's order, then any knob the file lacks.
    for key in [*(k for k in values if k in P.KNOBS), *(k for k in P.KNOBS if k not in values)]:
        k = P.KNOBS[key]
        lines.append(
            f"| `{key}` | {k.symbol or '-'} | {values.get(key, '(missing)')} | {k.default} "
            f"| {k.allowed} | {k.meaning} |"
        )
    return "\n".join(lines) + "\n"


def main(params: Path = typer.Option(Path("params.yaml"), help="Params file whose values to show.")) -> None:
    typer.echo(table(yaml.safe_load(params.read_text()) or {}), nl=False)
