"""The paper's and the report's figures, as matplotlib Figures (no pyplot, so no global backend).

Every function takes plain arrays and dicts and returns the Figure; `save_figure` writes a PNG
atomically. Accuracies are fractions 0..1 in the inputs and shown as percentages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dismi.data.factors import EXCLUSIVE_FACTORS, FACTORS, SHARED_FACTORS, SIZES, chance_level, ideal_accuracy
from dismi.data.results import PROBES, REPRESENTATIONS, Results
from dismi.eval.published import PAPER_ACCURACY, PAPER_DISTANCE, REPORT_ACCURACY, REPORT_DISTANCE
from dismi.util.files import atomic_write

Curve = tuple[np.ndarray, np.ndarray]  # (steps, values)
LABEL = {"shared": "S (shared)", "exclusive": "E (exclusive)"}
COLOUR = {"shared": "tab:blue", "exclusive": "tab:orange"}
PROBE_COLOUR = {"paper": "tab:green", "wide": "tab:olive"}  # another probe kind gets matplotlib's next colour
PROBE_LINE = {"paper": "-", "wide": ":"}
OWNER = {**{f: "shared factor" for f in SHARED_FACTORS}, **{f: "exclusive factor" for f in EXCLUSIVE_FACTORS}}


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write a PNG through a temporary file, so an interrupted save leaves no complete-looking figure."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def learning_curves(curves: Mapping[str, Mapping[str, Curve]], n_values: Sequence[int]) -> Figure:
    """Report Fig. 2: online classifier accuracy per factor during training, S and E, chance marked.

    `curves[representation][factor]` is (steps, accuracy); a representation may be absent.
    """
    fig = Figure(figsize=(13, 7), layout="constrained")
    axes = fig.subplots(2, 3, sharey=True).ravel()
    for ax, f, n in zip(axes, FACTORS, n_values):
        for rep, per_factor in curves.items():
            steps, acc = per_factor[f]
            ax.plot(steps, 100 * np.asarray(acc), color=COLOUR[rep], label=f"classifier on {LABEL[rep]}")
        ax.axhline(100 * chance_level(n), color="grey", linestyle="--", label=f"chance (1/{n})")
        ax.set_title(f"{f} ({OWNER[f]})")
        ax.set_xlabel("training iteration")
        ax.set_ylabel("accuracy on test batch (%)")
        ax.set_ylim(0, 102)
        ax.legend(fontsize=8, loc="center right")
    fig.suptitle("Online classifier accuracy during training (report Fig. 2)")
    return fig


def accuracy_table(results: Results, n_values: Sequence[int]) -> Figure:
    """Report Table VI as bars: held-out accuracy by each probe kind and the paper probe's online accuracy,
    S and E, beside paper, report, ideal and chance."""
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    x = np.arange(len(FACTORS))
    series = [
        (f"ours, {kind.label}, held-out", lambda rep, p=p: results.held_out[p][rep], PROBE_COLOUR.get(p))
        for p, kind in PROBES.items()
    ]
    series += [
        ("ours, paper probe, online (test batches)", lambda rep: results.online["paper"][rep], "tab:cyan"),
        ("Sanchez et al. (paper)", lambda rep: PAPER_ACCURACY[rep], "tab:purple"),
        ("Busellato (report)", lambda rep: REPORT_ACCURACY[rep], "tab:brown"),
    ]
    width = 0.8 / len(series)
    for ax, rep in zip(fig.subplots(1, 2, sharey=True), REPRESENTATIONS):
        for i, (label, values, colour) in enumerate(series):
            ax.bar(
                x + (i - (len(series) - 1) / 2) * width,
                [100 * values(rep)[f] for f in FACTORS],
                width,
                label=label,
                color=colour,
            )
        ideal = [100 * ideal_accuracy(f, rep, n) for f, n in zip(FACTORS, n_values)]
        chance = [100 * chance_level(n) for n in n_values]
        ax.scatter(x, ideal, marker="_", s=900, color="black", zorder=3, label="ideal")
        ax.scatter(x, chance, marker="_", s=900, color="red", zorder=3, label="chance")
        ax.set_xticks(x, FACTORS, rotation=20)
        ax.set_ylabel("classifier accuracy (%)")
        ax.set_ylim(0, 105)
        distances = ", ".join(
            f"{kind.label.removesuffix(' probe')} {results.held_out[p][rep]['distance_to_ideal']:.3f}"
            for p, kind in PROBES.items()
        )
        ax.set_title(
            f"Classifier on {LABEL[rep]}\ndistance to ideal: {distances} "
            f"(paper {PAPER_DISTANCE[rep]:.4f}, report {REPORT_DISTANCE[rep]:.3f})",
            fontsize=10,
        )
    handles, labels = ax.get_legend_handles_labels()
    # two rows: one row of seven entries is wider than the figure and DVC-independent viewers cut it
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=9)
    fig.suptitle("Accuracy per factor against ideal and chance (report Table VI)")
    return fig


def _mosaic(rows: np.ndarray, gap: int = 4) -> np.ndarray:
    """(Q, C, 64, 64, 3) uint8 -> one (Q*(64+gap), C*(64+gap), 3) image, white between tiles,
    a wider gap after the first column (the query)."""
    q, c, h, w, _ = rows.shape
    tiles = np.full((q, c, h + gap, w + gap, 3), 255, dtype=np.uint8)
    tiles[:, :, :h, :w] = rows
    grid = tiles.transpose(0, 2, 1, 3, 4).reshape(q * (h + gap), c * (w + gap), 3)
    return np.concatenate(
        [grid[:, : w + gap], np.full((len(grid), 3 * gap, 3), 255, np.uint8), grid[:, w + gap :]], axis=1
    )


def retrieval_grid(queries: np.ndarray, neighbours: Mapping[str, np.ndarray]) -> Figure:
    """Paper Fig. 4: each test query (left column) with its nearest test images by S and by E.

    `queries` (Q, 64, 64, 3) uint8; `neighbours[representation]` (Q, k, 64, 64, 3) uint8, nearest first.
    """
    k = next(iter(neighbours.values())).shape[1]
    fig = Figure(figsize=(max(8.0, 2 * (k + 1.3) * 0.7), len(queries) * 0.7 + 1.4), layout="constrained")
    meaning = {"shared": "should share scale, shape, orientation", "exclusive": "should share floor, wall, object hue"}
    for ax, (rep, nbrs) in zip(fig.subplots(1, len(neighbours), squeeze=False)[0], neighbours.items()):
        ax.imshow(_mosaic(np.concatenate([queries[:, None], nbrs], axis=1)))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"Nearest by {LABEL[rep]}:\n{meaning[rep]}", fontsize=10)
        ax.set_xlabel(f"query | {k} nearest, nearest first")
    fig.suptitle("Retrieval among held-out test images by Euclidean distance of the codes (paper Fig. 4)")
    return fig


def losses(curves: Mapping[str, Mapping[str, Curve]]) -> Figure:
    """Training losses of both stages: `curves[stage][logged name]` is (steps, value); the names as
    dvclive logs them (loss/total, mi/global, ...)."""
    fig = Figure(figsize=(13, 4.5), layout="constrained")
    titles = {"shared": "Shared stage (eq. 5-7)", "exclusive": "Exclusive stage (eq. 8-10)"}
    for ax, (stage, per_loss) in zip(fig.subplots(1, len(curves), squeeze=False)[0], curves.items()):
        for name, (steps, value) in per_loss.items():
            ax.plot(steps, value, label=name)
        ax.set_title(f"{titles[stage]} training losses")
        ax.set_xlabel("training iteration")
        ax.set_ylabel("value as logged (MI estimates in nats)")
        ax.legend(fontsize=8)
    fig.suptitle(
        "Training losses: loss/total is minimised; mi/global and mi/local are the MI estimates it maximises "
        "(eq. 2's JSD bound; InfoNCE with negatives_ex conditional)"
    )
    return fig


def lambda_adv_curve(
    lambdas: np.ndarray, mean: Mapping[str, np.ndarray], std: Mapping[str, np.ndarray], probe: str = "paper"
) -> Figure:
    """Paper Fig. 5: held-out accuracy of the classifier on E per factor as lambda_adv varies.

    `lambdas` (L,) one value per group of runs; `mean[factor]`, `std[factor]` (L,) fractions over
    the group's seeds, drawn as error bars. Chance levels (dashed) are the official grid's. Values two
    decades or more apart get a log axis (linear below the smallest positive value, where 0 is).
    """
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    x = np.asarray(lambdas, dtype=float)
    for i, (f, n) in enumerate(zip(FACTORS, SIZES)):
        colour = f"C{i}"
        ax.errorbar(
            x,
            100 * np.asarray(mean[f]),
            yerr=100 * np.asarray(std[f]),
            marker="o",
            capsize=3,
            color=colour,
            label=f"{f} ({OWNER[f]}; chance {100 * chance_level(n):.1f}%)",
        )
        ax.axhline(100 * chance_level(n), color=colour, linestyle="--", linewidth=0.8)
    positive = x[x > 0]
    if len(positive) > 1 and positive.max() / positive.min() >= 100:
        if len(positive) == len(x):
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=float(positive.min()))
            ax.set_xlim(left=0)
    ax.set_xlabel("lambda_adv (weight of the adversarial term)")
    ax.set_ylabel(f"held-out accuracy of the {probe} probe on E (%)")
    ax.set_ylim(0, 102)
    ax.set_title("Exclusive representation vs lambda_adv (paper Fig. 5), mean ± std over seeds")
    ax.legend(fontsize=8)
    return fig


def accuracy_over_seeds(mean: Mapping[str, float], std: Mapping[str, float], n_runs: int, title: str) -> Figure:
    """Held-out accuracy per factor of both probes on S and E, mean ± std over runs as error bars,
    beside the paper, the report, ideal and chance. Keys of mean/std: "probe/representation/factor"."""
    fig = Figure(figsize=(14, 6), layout="constrained")
    x = np.arange(len(FACTORS))
    series = [(f"{kind.label} ({kind.detail}), held-out", p, PROBE_COLOUR.get(p)) for p, kind in PROBES.items()]
    width = 0.8 / (len(series) + 2)
    for ax, rep in zip(fig.subplots(1, 2, sharey=True), REPRESENTATIONS):
        for i, (label, probe, colour) in enumerate(series):
            ax.bar(
                x + (i - (len(series) + 1) / 2) * width,
                [100 * mean[f"{probe}/{rep}/{f}"] for f in FACTORS],
                width,
                yerr=[100 * std[f"{probe}/{rep}/{f}"] for f in FACTORS],
                capsize=3,
                label=label,
                color=colour,
            )
        ax.bar(
            x + (len(series) - 1.5) * width,
            [100 * PAPER_ACCURACY[rep][f] for f in FACTORS],
            width,
            label="Sanchez et al. (paper, training batches)",
            color="tab:purple",
        )
        ax.bar(
            x + (len(series) - 0.5) * width,
            [100 * REPORT_ACCURACY[rep][f] for f in FACTORS],
            width,
            label="Busellato (report, training batches)",
            color="tab:brown",
        )
        ax.scatter(
            x,
            [100 * ideal_accuracy(f, rep, n) for f, n in zip(FACTORS, SIZES)],
            marker="_",
            s=900,
            color="black",
            zorder=3,
            label="ideal",
        )
        ax.scatter(x, [100 * chance_level(n) for n in SIZES], marker="_", s=900, color="red", zorder=3, label="chance")
        ax.set_xticks(x, FACTORS, rotation=20)
        ax.set_ylabel("classifier accuracy (%)")
        ax.set_ylim(0, 105)
        ax.set_title(
            f"Classifier on {LABEL[rep]}: distance to ideal, paper probe "
            f"{mean[f'paper/{rep}/distance_to_ideal']:.3f} ± {std[f'paper/{rep}/distance_to_ideal']:.3f} "
            f"(paper {PAPER_DISTANCE[rep]:.4f})",
            fontsize=9,
        )
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(f"{title}: held-out accuracy, mean ± std over {n_runs} run(s)")
    return fig


def held_out_curves(rows: Sequence[Mapping]) -> Figure:
    """Held-out accuracy per factor against training iterations, S and E, both probes, plus the
    distance to ideal; `rows` as evaluate's curves.json (representation, probe, iteration, figures)."""
    fig = Figure(figsize=(15, 7), layout="constrained")
    axes = fig.subplots(2, 4, sharex=False).ravel()
    for ax, f in zip(axes, (*FACTORS, "distance_to_ideal")):
        for rep in REPRESENTATIONS:
            for probe, kind in PROBES.items():
                pts = sorted(
                    (r["iteration"], r[f])
                    for r in rows
                    if r["representation"] == rep and r["probe"] == probe and r["iteration"] is not None
                )
                if pts:
                    it, v = np.array(pts).T
                    scale = 1 if f == "distance_to_ideal" else 100
                    ax.plot(
                        it,
                        scale * v,
                        PROBE_LINE.get(probe, "--"),
                        marker="o",
                        color=COLOUR[rep],
                        label=f"{LABEL[rep]}, {kind.label}",
                    )
        if f != "distance_to_ideal":
            n = SIZES[FACTORS.index(f)]
            ax.axhline(100 * chance_level(n), color="grey", linestyle="--", label="chance")
            ax.set_ylim(0, 102)
            ax.set_ylabel("held-out accuracy (%)")
            ax.set_title(f"{f} ({OWNER[f]})")
        else:
            ax.set_ylabel("sum |accuracy - ideal|")
            ax.set_title("distance to ideal")
        ax.set_xlabel("training iteration of that stage")
    axes[0].legend(fontsize=7)
    axes[-1].axis("off")
    fig.suptitle("Held-out accuracy of fresh probes on encoder snapshots during training")
    return fig


def importance_matrix(blob: Mapping) -> Figure:
    """DCI's importance matrix over [S, E] as a heat map: factors by code dimensions, S's block then E's,
    each factor's row normalised to sum 1; `blob` as evaluate's importance.json."""
    imp = np.asarray(blob["importance"], dtype=float).T  # (6, D_S + D_E)
    rows = imp / np.maximum(imp.sum(axis=1, keepdims=True), 1e-12)
    d_s = int(blob["shared_dim"])
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    ax = fig.subplots()
    shown = ax.imshow(rows, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.axvline(d_s - 0.5, color="white", linewidth=2)
    ax.set_yticks(range(len(blob["factors"])), [f"{f} ({OWNER[f]})" for f in blob["factors"]])
    ax.set_xlabel(f"code dimension: S 0-{d_s - 1} | E {d_s}-{rows.shape[1] - 1}")
    for x, text in ((d_s / 2, "S"), (d_s + (rows.shape[1] - d_s) / 2, "E")):
        ax.text(x - 0.5, -0.7, text, ha="center", va="bottom", fontsize=11, fontweight="bold")
    fig.colorbar(shown, ax=ax, label="share of the factor's importance")
    fig.suptitle(
        "DCI importance of each code dimension for each factor (extremely randomised trees on [S, E], train split)"
    )
    return fig
