"""What `dvc plots show` draws from the committed metrics: the held-out curves one panel per
(representation, probe), and, with the page `python -m stages offline-plots` writes, charts that a
browser with no network draws (checked in headless Chromium where it is installed)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FACTORS = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]


def _run(cwd, *cmd):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """The repository's files (committed metrics included) in a throw-away git repository."""
    dst = tmp_path_factory.mktemp("plots")
    files = _run(REPO, "git", "ls-files", "--cached", "--others", "--exclude-standard").split()
    for rel in files:
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    _run(dst, "git", "init", "-q")
    _run(dst, "git", "add", "-A")
    _run(dst, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy")
    return dst


def test_held_out_curves_are_drawn_per_representation_and_probe(checkout):
    plots = json.loads(
        _run(checkout, sys.executable, "-m", "dvc", "plots", "show", "--json", "-o", str(checkout / "out"))
    )
    plots = plots.get("data", plots)
    for plot_id, ys in (("held_out_accuracy", set(FACTORS)), ("metrics/curves.json", {"distance_to_ideal"})):
        (vega,) = plots[plot_id]
        spec = vega["content"]
        assert spec["facet"]["row"]["field"] == "representation" and spec["facet"]["column"]["field"] == "probe"
        rows = spec["data"]["values"]
        assert {(r["representation"], r["probe"]) for r in rows} == {
            (rep, probe) for rep in ("shared", "exclusive") for probe in ("paper", "wide")
        }
        y = spec["spec"]["encoding"]["y"]["field"]
        if len(ys) > 1:  # several fields: DVC stacks their values in one column, named in `field`
            assert {r["field"] for r in rows} == ys and y == "dvc_inferred_y_value"
        else:
            assert y == "distance_to_ideal"


def test_the_offline_page_bundles_vega_and_keeps_dvcs_placeholders(tmp_path):
    from stages.offline_plots import page

    html = page()
    assert "{plot_divs}" in html and "{refresh_tag}" in html and "{scripts}" not in html  # no CDN scripts
    assert "window.vegaEmbed=" in html and not re.search(r"<script[^>]*src=", html)  # inline, nothing to fetch


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_dvc_plots_show_draws_every_chart_with_no_network(checkout):
    out = _run(checkout, sys.executable, "-m", "stages", "offline-plots")
    assert "plots.html_template" in out
    _run(checkout, sys.executable, "-m", "dvc", "plots", "show", "-o", str(checkout / "offline"))
    html = (checkout / "offline" / "index.html").read_text()
    assert "cdn.jsdelivr" not in html
    n_vega = html.count("vegaEmbed('#")
    assert n_vega >= 8
    # Every request through a proxy that does not exist: nothing can be fetched.
    dom = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--proxy-server=127.0.0.1:9",
            "--virtual-time-budget=20000",
            "--dump-dom",
            (checkout / "offline" / "index.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    charts = dom.split('class="vega-embed')[1:]
    assert len(charts) == n_vega, f"{len(charts)} of {n_vega} charts drawn"
    for chart in charts:  # a drawn chart: an SVG with at least one line or symbol path
        assert re.search(r'<svg[^>]*class="marks".*?<path[^>]* d="M', chart, re.S), chart[:300]
    facet = dom[dom.index('id="held_out_accuracy"') :]
    facet = facet[: facet.index("<div id=", 10)]
    assert all(f">{t}<" in facet for t in ("shared", "exclusive", "paper", "wide"))  # the panels' headers
