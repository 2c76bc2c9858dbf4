"""Figures return titled Figures with the numbers they were given."""

import matplotlib.image
import numpy as np
import pytest

from dismi.data.factors import FACTORS
from dismi.data.results import Results
from dismi.eval import plotting

ACC = {f: 0.1 * (i + 1) for i, f in enumerate(FACTORS)}
N_VALUES = [10, 10, 10, 8, 4, 15]


def _curve(n=5):
    return np.arange(n) * 100, np.linspace(0.1, 0.9, n)


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


# ---- figures -------------------------------------------------------------------------------


def test_learning_curves_one_panel_per_factor_with_chance():
    fig = plotting.learning_curves({rep: {f: _curve() for f in FACTORS} for rep in ("shared", "exclusive")}, N_VALUES)
    assert "report Fig. 2" in fig.get_suptitle()
    assert _titles(fig) == [f"{f} ({plotting.OWNER[f]})" for f in FACTORS]
    ax = fig.axes[FACTORS.index("shape")]
    assert ax.get_xlabel() == "training iteration" and "(%)" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["classifier on S (shared)", "classifier on E (exclusive)", "chance (1/4)"]
    assert ax.lines[2].get_ydata()[0] == pytest.approx(25.0)


def test_accuracy_table_names_ours_paper_report_ideal_chance():
    paper_acc = {f: 0.5 for f in FACTORS}
    results = Results(
        held_out={
            "wide": {"shared": {**ACC, "distance_to_ideal": 1.5}, "exclusive": {**ACC, "distance_to_ideal": 0.25}},
            "paper": {
                "shared": {**paper_acc, "distance_to_ideal": 1.25},
                "exclusive": {**paper_acc, "distance_to_ideal": 0.75},
            },
        },
        online={"wide": {"shared": ACC, "exclusive": ACC}, "paper": {"shared": ACC, "exclusive": ACC}},
        retrieval={},
    )
    fig = plotting.accuracy_table(results, N_VALUES)
    assert "Table VI" in fig.get_suptitle()
    assert _titles(fig)[0].startswith(
        "Classifier on S (shared)\ndistance to ideal: paper 1.250, wide 1.500 (paper 0.0020"
    )
    # readable at its saved size: the two panel titles apart, the legend inside the figure
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") else None
    if renderer is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()
    left, right = (ax.title.get_window_extent(renderer) for ax in fig.axes[:2])
    assert left.x1 < right.x0, "the panel titles run into each other"
    legend, whole = fig.legends[0].get_window_extent(renderer), fig.bbox
    assert whole.x0 <= legend.x0 and legend.x1 <= whole.x1, "the legend is cut at the figure's edge"
    assert "paper 0.750, wide 0.250 (paper 0.1955, report 0.600)" in _titles(fig)[1]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {
        "ideal",
        "chance",
        "ours, paper probe, held-out",
        "ours, wide probe, held-out",
        "Sanchez et al. (paper)",
        "Busellato (report)",
    } <= set(labels)
    # The first six bars on S are ours, paper probe, held-out; the next six the wide probe, in percent.
    heights = [p.get_height() for p in fig.axes[0].patches[: 2 * len(FACTORS)]]
    assert heights == pytest.approx([50.0] * len(FACTORS) + [100 * ACC[f] for f in FACTORS])


def test_retrieval_grid_shows_queries_beside_their_neighbours():
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    nbrs = {rep: rng.integers(0, 256, size=(2, 3, 64, 64, 3), dtype=np.uint8) for rep in ("shared", "exclusive")}
    fig = plotting.retrieval_grid(queries, nbrs)
    assert "paper Fig. 4" in fig.get_suptitle()
    assert [t.split(":")[0] for t in _titles(fig)] == ["Nearest by S (shared)", "Nearest by E (exclusive)"]
    mosaic = fig.axes[0].get_images()[0].get_array()
    assert np.array_equal(mosaic[:64, :64], queries[0])  # top-left tile: the first query
    assert np.array_equal(mosaic[68:132, :64], queries[1])  # one tile (64) and one gap (4) lower
    assert np.array_equal(mosaic[:64, -68:-4], nbrs["shared"][0, 2])  # its farthest shown neighbour by S


def test_losses_one_panel_per_stage():
    fig = plotting.losses(
        {
            "shared": {"loss/total": _curve(), "mi/global": _curve(), "loss/l1": _curve()},
            "exclusive": {"loss/total": _curve(), "loss/adv_encoder": _curve()},
        }
    )
    assert _titles(fig) == ["Shared stage (eq. 5-7) training losses", "Exclusive stage (eq. 8-10) training losses"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["loss/total", "mi/global", "loss/l1"]
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["loss/total", "loss/adv_encoder"]
    assert "mi/global and mi/local are the MI estimates it maximises" in fig.get_suptitle()
    assert "InfoNCE with negatives_ex conditional" in fig.get_suptitle()


def test_save_figure_writes_a_png_and_no_temporary(tmp_path):
    plotting.save_figure(plotting.losses({"shared": {"total": _curve()}}), tmp_path / "out" / "losses.png")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["losses.png"]
    assert matplotlib.image.imread(tmp_path / "out" / "losses.png").shape[2] in (3, 4)


# ---- studies over seeds and held-out curves ---------------------------------------------------


def _figures(value: float) -> dict[str, float]:
    return {
        f"{probe}/{rep}/{f}": value
        for probe in ("paper", "wide")
        for rep in ("shared", "exclusive")
        for f in (*FACTORS, "distance_to_ideal")
    }


def test_accuracy_over_seeds_draws_both_probes_with_error_bars():
    fig = plotting.accuracy_over_seeds(_figures(0.5), _figures(0.1), 3, "profile")
    assert "mean ± std over 3 run(s)" in fig.get_suptitle()
    assert _titles(fig)[0].startswith("Classifier on S (shared): distance to ideal, paper probe 0.500 ± 0.100")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"paper probe (Table V), held-out", "wide probe (2x256), held-out", "ideal", "chance"} <= set(labels)
    heights = [p.get_height() for p in fig.axes[0].patches[: len(FACTORS)]]
    assert heights == pytest.approx([50.0] * len(FACTORS))
    # One error bar per bar of ours, as long as the spread: drawn, not only the mean.
    bars = [c for c in fig.axes[0].containers if type(c).__name__ == "BarContainer"][0]
    segments = bars.errorbar.lines[2][0].get_segments()
    assert [seg[1][1] - seg[0][1] for seg in segments] == pytest.approx([20.0] * len(FACTORS))


def test_lambda_curve_has_one_series_per_factor_with_error_bars():
    mean = {f: np.array([0.9, 0.5]) for f in FACTORS}
    std = {f: np.array([0.01, 0.05]) for f in FACTORS}
    fig = plotting.lambda_adv_curve(np.array([0.0, 0.05]), mean, std)
    ax = fig.axes[0]
    assert "paper Fig. 5" in ax.get_title() and ax.get_xlabel().startswith("lambda_adv")
    assert len(ax.get_legend().get_texts()) == len(FACTORS)
    assert ax.lines[0].get_ydata().tolist() == pytest.approx([90.0, 50.0])


def test_held_out_curves_plot_each_probe_and_representation_against_iterations():
    rows = [
        {"representation": rep, "probe": probe, "iteration": it, **{f: a for f in FACTORS}, "distance_to_ideal": 3 * a}
        for rep in ("shared", "exclusive")
        for probe in ("paper", "wide")
        for it, a in ((100, 0.2), (200, 0.4))
    ]
    fig = plotting.held_out_curves(rows)
    ax = fig.axes[FACTORS.index("scale")]
    assert ax.get_title() == "scale (shared factor)"
    assert [line.get_xdata().tolist() for line in ax.lines[:4]] == [[100, 200]] * 4
    assert ax.lines[0].get_ydata().tolist() == pytest.approx([20.0, 40.0])
    assert fig.axes[6].lines[0].get_ydata().tolist() == pytest.approx([0.6, 1.2])  # distance, not in percent


@pytest.mark.parametrize(
    "lambdas, scale",
    [([0.0, 0.05], "linear"), ([0.01, 0.1, 1.0], "log"), ([0.0, 0.01, 1.0], "symlog"), ([0.0, 0.01], "linear")],
)
def test_lambda_curve_uses_a_log_axis_when_the_values_span_two_decades(lambdas, scale):
    n = len(lambdas)
    fig = plotting.lambda_adv_curve(
        np.array(lambdas), {f: np.full(n, 0.5) for f in FACTORS}, {f: np.zeros(n) for f in FACTORS}
    )
    ax = fig.axes[0]
    assert ax.get_xscale() == scale
    low, high = ax.get_xlim()
    assert low <= min(lambdas) and high >= max(lambdas)  # every point inside the axis
    if scale == "symlog":
        assert low == 0
