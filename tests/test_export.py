"""What a researcher uses outside the pipeline: `dismi.load_encoder`, `python -m stages export`, and the
example under docs/examples that draws a figure from the exported codes."""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dismi
from dismi.data.factors import FACTORS
from dismi.data.pairfile import TEST, TRAIN, load_pairs
from dismi.model.networks import Encoder, encode, seeded
from dismi.train import modelfile
from dismi.util.files import file_sha256

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def encoders(tmp_path, pairs_file):
    out = {}
    for kind, dim, seed in (("shared", 8, 0), ("exclusive", 4, 1)):
        encoder = seeded(lambda dim=dim: Encoder(2, dim), torch.Generator().manual_seed(seed))
        out[kind] = tmp_path / f"{kind}.pt"
        modelfile.save_model(out[kind], encoder, kind, {}, file_sha256(pairs_file))
    return out


def test_load_encoder_gives_an_encoder_in_eval_mode_whose_codes_are_the_evaluated_ones(encoders, pairs_file):
    encoder = dismi.load_encoder(encoders["exclusive"])
    assert not encoder.training and encoder.out_dim == 4
    images = load_pairs(pairs_file).images[:5]
    assert np.array_equal(dismi.encode(encoder, images), encode(modelfile.load_model(encoders["exclusive"])[0], images))


def test_export_writes_both_codes_of_both_splits_with_their_classes(run_stage, tmp_path, encoders, pairs_file):
    out = tmp_path / "codes.npz"
    args = ["--pairs", pairs_file, "--shared", encoders["shared"], "--exclusive", encoders["exclusive"], "--out", out]
    code, output = run_stage("export", *map(str, args))
    assert code == 0, output
    z, data = np.load(out), load_pairs(pairs_file)
    assert list(z["factors"]) == list(FACTORS)
    for split, which in (("train", TRAIN), ("test", TEST)):
        rows = data.image_rows(which)
        assert np.array_equal(z[f"classes_{split}"], data.classes[rows])
        assert np.array_equal(z[f"image_{split}"], data.source[rows])
        assert z[f"s_{split}"].shape == (len(rows), 8) and z[f"e_{split}"].shape == (len(rows), 4)
        assert np.array_equal(
            z[f"e_{split}"], dismi.encode(dismi.load_encoder(encoders["exclusive"]), data.images[rows])
        )
    assert not list(tmp_path.glob(".codes*"))  # no temporary file left


def test_export_refuses_swapped_encoders_in_one_line(run_stage, tmp_path, encoders, pairs_file):
    args = ["--pairs", pairs_file, "--shared", encoders["exclusive"], "--exclusive", encoders["shared"]]
    code, output = run_stage("export", *map(str, args), "--out", str(tmp_path / "codes.npz"))
    assert code == 1 and "holds a 'exclusive' encoder" in output
    assert not (tmp_path / "codes.npz").exists()


def test_the_example_draws_its_figure_from_exported_codes(run_stage, tmp_path, encoders, pairs_file, monkeypatch):
    codes = tmp_path / "codes.npz"
    args = ["--pairs", pairs_file, "--shared", encoders["shared"], "--exclusive", encoders["exclusive"]]
    assert run_stage("export", *map(str, args), "--out", str(codes))[0] == 0
    figure = tmp_path / "codes.png"
    monkeypatch.setattr(sys, "argv", ["codes_figure.py", str(codes), str(figure)])
    runpy.run_path(str(REPO / "docs" / "examples" / "codes_figure.py"), run_name="__main__")
    assert figure.stat().st_size > 10_000 and figure.read_bytes()[:4] == b"\x89PNG"
