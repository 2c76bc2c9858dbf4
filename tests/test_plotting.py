"""Figures return titled Figures; the sweep reads real `dvc exp show --json` output (DVC 3.x)."""
import json

import matplotlib.image
import numpy as np
import pytest
from typer.testing import CliRunner

from dismi import plotting
from dismi.errors import DismiError
from dismi.factors import FACTORS
from stages.__main__ import app
from stages.sweep import ablation_table, lambda_runs, parse_exp_show

# `dvc exp show --json` from DVC 3.67 in a scratch repository: a baseline commit, experiments
# from `dvc exp run -S` (lambda_adv=0, lambda_adv=0.05, switched=false, gamma=0, width=32, and
# seed=1 with lambda_adv=0.05), one queued with `--queue` (no metrics yet), and the workspace
# holding the last run. Trimmed: deps, outs, meta, timestamps and executor details removed;
# the metric values come from a stand-in stage.
EXP_SHOW = r"""
[
 {
  "rev": "workspace",
  "name": null,
  "data": {
   "params": {"params.yaml": {"data": {"seed": 1, "width": 64, "alpha_sh": 0.5, "beta_sh": 1.0, "gamma": 0.1, "switched": true, "lambda_adv": 0.05}}},
   "metrics": {
    "metrics/evaluate.json": {
     "data": {
      "shared": {"floor_hue": 0.1, "wall_hue": 0.1, "object_hue": 0.1, "scale": 0.99, "shape": 0.98, "orientation": 0.97, "distance_to_ideal": 0.06},
      "exclusive": {"floor_hue": 0.85, "wall_hue": 0.95, "object_hue": 0.9, "scale": 0.18, "shape": 0.26, "orientation": 0.07, "distance_to_ideal": 0.3}
     }
    }
   }
  },
  "error": null,
  "experiments": null
 },
 {
  "rev": "de9c757c905e918278cddbd5a11cf8078bcad809",
  "name": "master",
  "data": {
   "params": {"params.yaml": {"data": {"seed": 0, "width": 64, "alpha_sh": 0.5, "beta_sh": 1.0, "gamma": 0.1, "switched": true, "lambda_adv": 0.01}}},
   "metrics": {
    "metrics/evaluate.json": {
     "data": {
      "shared": {"floor_hue": 0.1, "wall_hue": 0.1, "object_hue": 0.1, "scale": 0.99, "shape": 0.98, "orientation": 0.97, "distance_to_ideal": 0.06},
      "exclusive": {"floor_hue": 0.89, "wall_hue": 0.95, "object_hue": 0.9, "scale": 0.14, "shape": 0.26, "orientation": 0.07, "distance_to_ideal": 0.3}
     }
    }
   }
  },
  "error": null,
  "experiments": [
   {
    "revs": [
     {
      "rev": "b7971bd6ff2b5e25200a6ca30c1db09e710fa3e8",
      "name": "briny-abac",
      "data": {
       "params": {"params.yaml": {"data": {"seed": 1, "width": 64, "alpha_sh": 0.5, "beta_sh": 1.0, "gamma": 0.1, "switched": true, "lambda_adv": 0.05}}},
       "metrics": {
        "metrics/evaluate.json": {
         "data": {
          "shared": {"floor_hue": 0.1, "wall_hue": 0.1, "object_hue": 0.1, "scale": 0.99, "shape": 0.98, "orientation": 0.97, "distance_to_ideal": 0.06},
          "exclusive": {"floor_hue": 0.85, "wall_hue": 0.95, "object_hue": 0.9, "scale": 0.18, "shape": 0.26, "orientation": 0.07, "distance_to_ideal": 0.3}
         }
        }
       }
      },
      "error": null,
      "experiments": null
     }
    ],
    "executor": null,
    "name": "briny-abac"
   },
   {
    "revs": [
     {
      "rev": "fc8d29d07c1e61d204133a889d9c81982b4c9605",
      "name": "filmy-oner",
      "data": {
       "params": {"params.yaml": {"data": {"seed": 0, "width": 32, "alpha_sh": 0.5, "beta_sh": 1.0, "gamma": 0.1, "switched": true, "lambda_adv": 0.01}}},
       "metrics": {
        "metrics/evaluate.json": {
         "data": {
          "shared": {"floor_hue": 0.1, "wall_hue": 0.1, "object_hue": 0.1, "scale": 0.99, "shape": 0.98, "orientation": 0.97, "distance_to_ideal": 0.06},
          "exclusive": {"floor_hue": 0.89, "wall_hue": 0.95, "object_hue": 0.9, "scale": 0.14, "shape": 0.26, "orientation": 0.07, "distance_to_ideal": 0.3}
         }
        }
       }
      },
      "error": null,
      "experiments": null
     }
    ],
    "executor": null,
    "name": "filmy-oner"
   },
   {
    "revs": [
     {
      "rev": "c5463d5d6f3c6eea8ebc9dc32f1ae1ca53aeb474",
      "name": "spiky-tipi",
      "data": {
       "params": {"params.yaml": {"data": {"seed": 0, "width": 64, "alpha_sh": 0.5, "beta_sh": 1.0, "gamma": 0, "switched": true, "lambda_adv": 0.01}}},
       "metrics": {
        "metrics/evaluate.json": {
         "data": {
          "shared": {"floor_hue": 0.1, "wall_hue": 0.1, "object_hue": 0.1, "scale": 0.94, "shape": 0.93, "orientation": 0.92, "distance_to_ideal": 0.21},
          "exclusive": {"floor_hue": 0.89, "wall_hue": 0.95, "object_hue": 0.9, "scale": 0.14, "shape": 0.26, "orientation": 0.07, "distance_to_ideal": 0.3}
         }
        }
       }
      },
      "error": null,
      "experiments": null
     }
    ],
    "executor": null,
    "name": "spiky-tipi"
   },
   {
    "revs": [
     {
      "rev": "726dc12b91f8418dfc47e1c517cd1fa64a49d68d",
      "name": "mixed-bond",
      "data": {
       "params": {"params.yaml": {"data": {"seed": 0, "width": 64, "alpha_sh": 0.5, "beta_sh": 1.0, "gamma": 0.1, "switched": false, "lambda_adv": 0.01}}},
       "metrics": {
        "metrics/evaluate.json": {
         "data": {
          "shared": {"floor_hue": 0.1, "wall_hue": 0.1, "object_hue": 0.1, "scale": 0.89, "shape": 0.88, "orientation": 0.87, "distance_to_ideal": 0.36},
          "exclusive": {"floor_hue": 0.89, "wall_hue": 0.95, "object_hue": 0.9, "scale": 0.14, "shape": 0.26, "orientation": 0.07, "distance_to_ideal": 0.3}
         }
        }
       }
      },
      "error": null,
      "experiments": null
     }
    ],
    "executor": null,
    "name": "mixed-bond"
   },
   {
    "revs": [
     {
      "rev": "f30fe9416951e685c894bbe54767ef8a19fec393",
      "name": "olive-corm",
      "data": {
       "params": {"params.yaml": {"data": {"seed": 0, "width": 64, "alpha_sh": 0.5, "beta_sh": 1.0, "gamma": 0.1, "switched": true, "lambda_adv": 0.05}}},
       "metrics": {
        "metrics/evaluate.json": {
         "data": {
          "shared": {"floor_hue": 0.1, "wall_hue": 0.1, "object_hue": 0.1, "scale": 0.99, "shape": 0.98, "orientation": 0.97, "distance_to_ideal": 0.06},
          "exclusive": {"floor_hue": 0.85, "wall_hue": 0.95, "object_hue": 0.9, "scale": 0.18, "shape": 0.26, "orientation": 0.07, "distance_to_ideal": 0.3}
         }
        }
       }
      },
      "error": null,
      "experiments": null
     }
    ],
    "executor": null,
    "name": "olive-corm"
   },
   {
    "revs": [
     {
      "rev": "82999ddea155c12c22d31b57bb934bd7fece7dd3",
      "name": "campy-trio",
      "data": {
       "params": {"params.yaml": {"data": {"seed": 0, "width": 64, "alpha_sh": 0.5, "beta_sh": 1.0, "gamma": 0.1, "switched": true, "lambda_adv": 0}}},
       "metrics": {
        "metrics/evaluate.json": {
         "data": {
          "shared": {"floor_hue": 0.1, "wall_hue": 0.1, "object_hue": 0.1, "scale": 0.99, "shape": 0.98, "orientation": 0.97, "distance_to_ideal": 0.06},
          "exclusive": {"floor_hue": 0.9, "wall_hue": 0.95, "object_hue": 0.9, "scale": 0.13, "shape": 0.26, "orientation": 0.07, "distance_to_ideal": 0.3}
         }
        }
       }
      },
      "error": null,
      "experiments": null
     }
    ],
    "executor": null,
    "name": "campy-trio"
   },
   {
    "revs": [
     {
      "rev": "b1cafd323b179cc8e2e0df31504ede5d41248233",
      "name": "rowdy-fids",
      "data": {
       "params": {"params.yaml": {"data": {"seed": 1, "width": 64, "alpha_sh": 0.5, "beta_sh": 0, "gamma": 0.1, "switched": true, "lambda_adv": 0.05}}},
       "metrics": {}
      },
      "error": null,
      "experiments": null
     }
    ],
    "executor": {"state": "queued", "name": "dvc-task"},
    "name": "rowdy-fids"
   }
  ]
 }
]
"""

ACC = {f: 0.1 * (i + 1) for i, f in enumerate(FACTORS)}
N_VALUES = [10, 10, 10, 8, 4, 15]


def _curve(n=5):
    return np.arange(n) * 100, np.linspace(0.1, 0.9, n)


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


# ---- figures -------------------------------------------------------------------------------

def test_learning_curves_one_panel_per_factor_with_chance():
    fig = plotting.learning_curves({rep: {f: _curve() for f in FACTORS} for rep in ("shared", "exclusive")},
                                   N_VALUES)
    assert "report Fig. 2" in fig.get_suptitle()
    assert _titles(fig) == [f"{f} ({plotting.OWNER[f]})" for f in FACTORS]
    ax = fig.axes[FACTORS.index("shape")]
    assert ax.get_xlabel() == "training iteration" and "(%)" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["classifier on S (shared)", "classifier on E (exclusive)", "chance (1/4)"]
    assert ax.lines[2].get_ydata()[0] == pytest.approx(25.0)


def test_accuracy_table_names_ours_paper_report_ideal_chance():
    results = {"shared": {**ACC, "distance_to_ideal": 1.5}, "exclusive": {**ACC, "distance_to_ideal": 0.25},
               "online": {"shared": ACC, "exclusive": ACC}}
    fig = plotting.accuracy_table(results, N_VALUES)
    assert "Table VI" in fig.get_suptitle()
    assert _titles(fig)[0].startswith("Classifier on S (shared): distance to ideal 1.5000 (paper 0.0020")
    assert "distance to ideal 0.2500 (paper 0.1955, report 0.600)" in _titles(fig)[1]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"ideal", "chance", "ours, held-out test images", "Sanchez et al. (paper)",
            "Busellato (report)"} <= set(labels)
    # The first six bars on S are ours, held-out, one per factor, in percent.
    heights = [p.get_height() for p in fig.axes[0].patches[:len(FACTORS)]]
    assert heights == pytest.approx([100 * ACC[f] for f in FACTORS])


def test_retrieval_grid_shows_queries_beside_their_neighbours():
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    nbrs = {rep: rng.integers(0, 256, size=(2, 3, 64, 64, 3), dtype=np.uint8) for rep in ("shared", "exclusive")}
    fig = plotting.retrieval_grid(queries, nbrs)
    assert "paper Fig. 4" in fig.get_suptitle()
    assert [t.split(":")[0] for t in _titles(fig)] == ["Nearest by S (shared)", "Nearest by E (exclusive)"]
    mosaic = fig.axes[0].get_images()[0].get_array()
    assert np.array_equal(mosaic[:64, :64], queries[0])      # top-left tile: the first query
    assert np.array_equal(mosaic[68:132, :64], queries[1])   # one tile (64) and one gap (4) lower
    assert np.array_equal(mosaic[:64, -68:-4], nbrs["shared"][0, 2])  # its farthest shown neighbour by S


def test_losses_one_panel_per_stage():
    fig = plotting.losses({"shared": {"total": _curve(), "l1": _curve()},
                           "exclusive": {"total": _curve(), "adv_encoder": _curve()}})
    assert _titles(fig) == ["Shared stage (eq. 5-7) training losses", "Exclusive stage (eq. 8-10) training losses"]
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["total", "adv_encoder"]


def test_save_figure_writes_a_png_and_no_temporary(tmp_path):
    plotting.save_figure(plotting.losses({"shared": {"total": _curve()}}), tmp_path / "out" / "losses.png")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["losses.png"]
    assert matplotlib.image.imread(tmp_path / "out" / "losses.png").shape[2] in (3, 4)


# ---- sweep ---------------------------------------------------------------------------------

@pytest.fixture
def exp_show():
    return json.loads(EXP_SHOW)


def test_parse_keeps_runs_with_metrics_and_drops_the_repeated_workspace(exp_show):
    baseline, runs = parse_exp_show(exp_show)
    assert baseline["lambda_adv"] == 0.01 and baseline["seed"] == 0
    assert [r.name for r in runs] == ["master", "briny-abac", "filmy-oner", "spiky-tipi", "mixed-bond",
                                      "olive-corm", "campy-trio"]  # not the queued rowdy-fids
    exp_show[0]["data"]["params"]["params.yaml"]["data"]["gamma"] = 0.3  # a workspace no run repeats
    assert [r.name for r in parse_exp_show(exp_show)[1]][-1] == "workspace"


def test_lambda_curve_takes_the_runs_that_change_only_lambda_adv(exp_show):
    lambdas, acc = lambda_runs(*parse_exp_show(exp_show))
    # Baseline 0.01, campy-trio 0, and two runs at 0.05 (one with another seed); not width=32.
    assert lambdas.tolist() == [0.0, 0.01, 0.05, 0.05]
    assert acc["floor_hue"].tolist() == [0.9, 0.89, 0.85, 0.85]
    fig = plotting.lambda_adv_curve(lambdas, acc)
    assert "paper Fig. 5" in fig.axes[0].get_title() and fig.axes[0].get_xlabel().startswith("lambda_adv")
    assert len(fig.axes[0].get_legend().get_texts()) == len(FACTORS)


def test_ablation_table_lists_baseline_and_shared_stage_ablations(exp_show):
    md = ablation_table(*parse_exp_show(exp_show))
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| run")]
    assert [r.split(" | ")[0] for r in rows] == ["| master (baseline)", "| spiky-tipi", "| mixed-bond"]
    assert "| mixed-bond | False | 0.1 | 0.5 | 1.0 | 0 | 10.00 | 10.00 | 10.00 | 89.00 | 88.00 | 87.00 | 0.3600 |" in md


def test_sweep_cli_writes_figure_and_table(tmp_path):
    (tmp_path / "show.json").write_text(EXP_SHOW)
    result = CliRunner().invoke(app, ["sweep", "--out", str(tmp_path / "sweep"), "--json", str(tmp_path / "show.json")])
    assert result.exit_code == 0, result.output
    assert matplotlib.image.imread(tmp_path / "sweep" / "lambda_adv.png").std() > 0.01
    assert "spiky-tipi" in (tmp_path / "sweep" / "ablations.md").read_text()


@pytest.mark.parametrize("text, message", [("[]", "no run with metrics/evaluate.json"),
                                           ("not json", "is not JSON")])
def test_sweep_without_usable_experiments_fails_clearly(tmp_path, text, message):
    (tmp_path / "show.json").write_text(text)
    result = CliRunner().invoke(app, ["sweep", "--out", str(tmp_path / "sweep"), "--json", str(tmp_path / "show.json")])
    assert isinstance(result.exception, DismiError) and message in str(result.exception)
    assert not (tmp_path / "sweep").exists()
