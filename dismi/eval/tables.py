"""Markdown tables: one builder (`markdown`), and evaluate's tables for the README (`evaluation_tables`)."""

from __future__ import annotations

from collections.abc import Sequence

from dismi.data.factors import FACTORS, chance_level, ideal_accuracy
from dismi.data.results import PROBES, REPRESENTATIONS, SYMBOL, Results
from dismi.eval.published import PAPER_ACCURACY, PAPER_DISTANCE, REPORT_ACCURACY, REPORT_DISTANCE


def markdown(header: Sequence[str], rows: Sequence[Sequence], numeric_from: int = 1) -> str:
    """A Markdown table; columns from `numeric_from` on are right-aligned. Cells are written as given."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _columns() -> list[tuple[str, str]]:
    """(probe, representation) in table order: S by each judge, then E."""
    return [(p, rep) for rep in REPRESENTATIONS for p in PROBES]


def _held_out(results: Results, n_values: Sequence[int]) -> str:
    cols = _columns()
    header = [
        "factor",
        *(f"{SYMBOL[r]} {PROBES[p].label}" for p, r in cols),
        "S ideal",
        "E ideal",
        "chance",
        "paper S",
        "paper E",
        "report S",
        "report E",
    ]
    rows = [
        [
            f,
            *(pct(results.held_out[p][r][f]) for p, r in cols),
            *(pct(ideal_accuracy(f, r, n)) for r in REPRESENTATIONS),
            pct(chance_level(n)),
            *(pct(PAPER_ACCURACY[r][f]) for r in REPRESENTATIONS),
            *(pct(REPORT_ACCURACY[r][f]) for r in REPRESENTATIONS),
        ]
        for f, n in zip(FACTORS, n_values)
    ]
    rows.append(
        [
            "distance to ideal",
            *(f"{results.held_out[p][r]['distance_to_ideal']:.4f}" for p, r in cols),
            "0",
            "0",
            "",
            *(f"{PAPER_DISTANCE[r]:.4f}" for r in REPRESENTATIONS),
            f"{REPORT_DISTANCE['shared']:.3f}",
            f"{REPORT_DISTANCE['exclusive']:.2f}",
        ]
    )
    return markdown(header, rows)


def evaluation_tables(results: Results, n_values: Sequence[int], standard: dict | None = None) -> str:
    """evaluate.md: held-out accuracy by both judges beside ideal, chance, paper and report; the online
    accuracies; the earlier protocol's (when logged); retrieval; the S-E dependence (when measured); the
    standard metrics (evaluate.json's `standard`, when given)."""
    cols = _columns()
    parts = [
        "Held-out accuracy (%) of fresh classifiers trained on train-split codes, measured on test "
        "held-out images, never seen by any encoder or classifier. Paper probe = Table V as written (hidden layers as "
        "wide as the number of classes), the classifier the paper's and the report's numbers come from; "
        "wide probe = 2x256 with BatchNorm, which reads out weaker dependences. Paper and report numbers "
        "were read off training batches.",
        _held_out(results, n_values),
        "Online accuracy (%): the classifiers trained beside the encoders on detached codes, last value "
        "logged, measured on a batch of test images (the paper's protocol reads training batches).",
        markdown(
            ["factor", *(f"{SYMBOL[r]} {PROBES[p].label}" for p, r in cols)],
            [[f, *(pct(results.online[p][r][f]) for p, r in cols)] for f in FACTORS],
        ),
    ]
    if "earlier" in results.online:
        ea = results.online["earlier"]
        parts += [
            "Online accuracy (%) by the earlier implementations' protocol (online_earlier): paper classifiers "
            "trained with softmax applied before the cross-entropy, accuracy on the training batches, mean of "
            "the last logging interval. A measurement of that protocol, not of the codes.",
            markdown(
                ["factor", "S", "E", "paper S", "paper E"],
                [
                    [
                        f,
                        pct(ea["shared"][f]),
                        pct(ea["exclusive"][f]),
                        pct(PAPER_ACCURACY["shared"][f]),
                        pct(PAPER_ACCURACY["exclusive"][f]),
                    ]
                    for f in FACTORS
                ],
            ),
        ]
    r = results.retrieval
    parts += [
        "Retrieval precision (%): for each test query, the share of its k nearest other test images "
        "(Euclidean) with the same value. S should match scale, shape, orientation; E the hues.",
        markdown(
            ["factor", "by S", "by E", "chance (1/n)"],
            [[f, pct(r["shared"][f]), pct(r["exclusive"][f]), pct(chance_level(n))] for f, n in zip(FACTORS, n_values)],
        ),
    ]
    if results.dependence is not None:
        dep = results.dependence
        parts += [
            "Dependence of S and E (final encoders), by fresh critics trained on train-split codes to tell joint "
            "(S, E) from E shuffled across images, scored on test images: held-out loss (eq. 9, joint and "
            f"shuffled summed; {dep['chance_loss']:.4f} = 2 ln 2 when they cannot be told apart) and the JSD "
            "(nats) it implies. Calibration: E shuffled across images before training, independent by "
            "construction. Paper critic = Table IV discriminator; separable = f(S) . g(E).",
            markdown(
                ["critic", "loss", "JSD", "calibration loss", "calibration JSD"],
                [
                    [c, *(f"{dep[c][k]:.4f}" for k in ("loss", "jsd", "calibration_loss", "calibration_jsd"))]
                    for c in dep
                    if c != "chance_loss"
                ],
            ),
        ]
    if standard is not None:
        parts += standard_tables(standard)
    return "\n\n".join(parts) + "\n"


def standard_tables(std: dict) -> list[str]:
    """The field's standard figures (dismi.eval.metrics.standard_metrics): DCI and MIG over [S, E], then per
    factor where its importance lives and how well each code alone predicts it."""
    dci, mig, share, info = std["dci"], std["mig"], std["importance_share"], std["informativeness"]
    return [
        "Standard metrics on the held-out split (estimators fitted on train-split codes): DCI (Eastwood & "
        "Williams 2018; extremely randomised trees, impurity importances) and MIG (Chen et al. 2018) over the concatenated "
        "code [S, E]; 1 is ideal for each.",
        markdown(
            ["code", "DCI disentanglement", "DCI completeness", "DCI informativeness (%)", "MIG"],
            [
                [
                    "[S, E]",
                    f"{dci['disentanglement']:.3f}",
                    f"{dci['completeness']:.3f}",
                    pct(dci["informativeness"]),
                    f"{mig['mig']:.3f}",
                ]
            ],
        ),
        "Where each factor lives: the share (%) of its DCI importance over [S, E] carried by S and by E (ideal: "
        "hues all in E; scale, shape and orientation all in S), its MIG gap, and the held-out accuracy (%) of "
        "the DCI forests on S alone, E alone and [S, E]. A forest on [S, E] needs one copy of a factor, so a "
        "copy E holds beside S's perfect one barely shows in the shares: the accuracy on E alone shows it.",
        markdown(
            ["factor", "share in S", "share in E", "MIG gap", "accuracy on S", "accuracy on E", "accuracy on [S, E]"],
            [
                [
                    f,
                    pct(share["shared"][f]),
                    pct(share["exclusive"][f]),
                    f"{mig[f]:.3f}",
                    *(pct(info[k][f]) for k in ("shared", "exclusive", "joint")),
                ]
                for f in FACTORS
            ],
        ),
    ]
