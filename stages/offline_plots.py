"""Not a stage: the page `dvc plots show` and `dvc plots diff` fill, with Vega, Vega-Lite and Vega-Embed
inside it (from the vl-convert-python package), so that their HTML draws its charts with no network.

DVC's own page loads those scripts from a CDN: offline it stays blank. DVC takes another page from the
`plots.html_template` setting (a path relative to .dvc/); this command writes one and sets it in
.dvc/config.local, this clone's own DVC settings: the page (about 1.5 MB of JavaScript) is no file of
the repository, and a committed setting naming a missing page would break `dvc plots` for everyone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from dismi.util.errors import DismiError
from dismi.util.files import write_text_atomic

# DVC's plots are Vega-Lite 5 specs; the page holds the newest Vega-Lite 5 the package bundles.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot (offline: Vega-Lite {version} bundled by vl-convert-python {package})</title>
    <script type="text/javascript">
{bundle}
    </script>
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def page() -> str:
    """The HTML page: DVC's {plot_divs} and {refresh_tag} placeholders, no {scripts} (the CDN's)."""
    try:
        import vl_convert
    except ImportError:
        raise DismiError(
            "vl-convert-python is not installed: pip install -e '.[offline-plots]' "
            "(it ships the Vega JavaScript this page bundles)"
        ) from None
    version = max(
        (v for v in vl_convert.get_vegalite_versions() if v.startswith("5.")),
        key=lambda v: tuple(map(int, v.split("."))),
    )
    bundle = vl_convert.javascript_bundle(vl_version=version)
    # DVC fills the page by replacing these placeholders: the bundle must not hold one.
    if any(p in bundle for p in ("{plot_divs}", "{scripts}", "{refresh_tag}")):
        raise DismiError(
            f"vl-convert-python {vl_convert.__version__}'s bundle holds a DVC placeholder: "
            "pin another version of vl-convert-python"
        )
    return PAGE.format(version=version, package=vl_convert.__version__, bundle=bundle)


def main(
    out: Path = typer.Option(
        Path(".dvc/tmp/plots_offline.html"),
        help="page to write (inside .dvc/, where plots.html_template is relative to)",
    ),
    configure: bool = typer.Option(True, help="set plots.html_template in .dvc/config.local"),
) -> None:
    dvc_dir = Path(".dvc")
    if configure and not dvc_dir.is_dir():
        raise DismiError("no .dvc directory here: run offline-plots at the repository's root, or pass --no-configure")
    write_text_atomic(out, page())
    typer.echo(f"{out}: DVC's plots page with Vega bundled ({out.stat().st_size / 1e6:.1f} MB)")
    if configure:
        template = out.resolve()
        rel = template.relative_to(dvc_dir.resolve()) if template.is_relative_to(dvc_dir.resolve()) else template
        subprocess.run([sys.executable, "-m", "dvc", "config", "--local", "plots.html_template", str(rel)], check=True)
        typer.echo(f"set plots.html_template = {rel} in .dvc/config.local: `dvc plots show` now draws offline")
