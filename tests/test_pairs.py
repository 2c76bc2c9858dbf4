"""Pair invariants (dismi.data.pairs) and the pairs stage through the CLI, on tiny reduced grids."""

import hashlib

import numpy as np
import pytest

from dismi.data.factors import EXCLUSIVE_FACTORS, FACTORS, SHARED_FACTORS, classes_to_values
from dismi.data.pairfile import TEST, TRAIN, load_pairs, write_pairs
from dismi.data.pairs import make_pairs, pair_data
from dismi.util.errors import DismiError

SHARED = [FACTORS.index(f) for f in SHARED_FACTORS]
HUES = [FACTORS.index(f) for f in EXCLUSIVE_FACTORS]
# 125 hue combinations in each of 8 (scale, shape, orientation) groups: 1,000 images.
HUE_GRID = ((0, 2, 4, 6, 8), (1, 3, 5, 7, 9), (0, 3, 6, 8, 9), (0, 7), (1, 3), (0, 14))


def check_invariants(classes, x, y, split, n_pairs, test_fraction):
    assert x.dtype == y.dtype == np.int64 and split.dtype == np.uint8
    assert len(x) == len(y) == len(split) == n_pairs
    assert (x != y).all()
    np.testing.assert_array_equal(classes[x][:, SHARED], classes[y][:, SHARED])
    unordered = np.sort(np.stack([x, y], axis=1), axis=1)
    assert len(np.unique(unordered, axis=0)) == n_pairs
    assert (split == TEST).sum() == round(test_fraction * n_pairs)
    train_images = set(x[split == TRAIN]) | set(y[split == TRAIN])
    test_images = set(x[split == TEST]) | set(y[split == TEST])
    assert train_images and test_images and not train_images & test_images


def test_pairs_share_scale_shape_orientation_and_splits_are_disjoint(grid_classes):
    classes = grid_classes(HUE_GRID)
    x, y, split = make_pairs(classes, 400, 0.1, seed=3)
    check_invariants(classes, x, y, split, 400, 0.1)


def test_hues_are_drawn_independently(grid_classes):
    classes = grid_classes(HUE_GRID)
    x, y, _ = make_pairs(classes, 2000, 0.2, seed=0)
    for h in HUES:
        same = np.mean(classes[x, h] == classes[y, h])
        assert 0.1 < same < 0.35  # 1/5 for independent draws among 5 values (a bit more given x != y)
        # x is not systematically the image earlier in the file, whose hues are lower.
        assert 0.35 < np.mean(classes[x, h] < classes[y, h]) / (1 - same) < 0.65


def test_a_side_can_be_filled_with_every_possible_pair(grid_classes):
    # 8 hue combinations per group, 2 of them test images: exactly 1 test pair in each of 12 groups.
    classes = grid_classes()
    x, y, split = make_pairs(classes, 48, 0.25, seed=1)
    check_invariants(classes, x, y, split, 48, 0.25)
    assert (split == TEST).sum() == 12
    with pytest.raises(DismiError, match="test split allows only 12 distinct pairs but n_pairs asks for 13"):
        make_pairs(classes, 52, 0.25, seed=1)


def test_same_seed_same_pairs_other_seed_other_pairs(grid_classes):
    classes = grid_classes(HUE_GRID)
    a = make_pairs(classes, 300, 0.1, seed=7)
    b = make_pairs(classes, 300, 0.1, seed=7)
    c = make_pairs(classes, 300, 0.1, seed=8)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("test_fraction", [0.0, 1.0, -0.1, 1.5])
def test_test_fraction_outside_open_interval(test_fraction, grid_classes):
    with pytest.raises(DismiError, match=f"test_fraction={test_fraction} must lie strictly between 0 and 1"):
        make_pairs(grid_classes(), 10, test_fraction, seed=0)


def test_too_few_pairs_for_a_test_split(grid_classes):
    with pytest.raises(DismiError, match="n_pairs=4 with test_fraction=0.1 leaves no test pairs"):
        make_pairs(grid_classes(), 4, 0.1, seed=0)


def test_one_image_per_group_allows_no_pair(grid_classes):
    classes = grid_classes(((0,), (0,), (0,), (0, 1), (0, 1), (0, 1, 2)))
    with pytest.raises(DismiError, match="allows only 0 distinct pairs"):
        make_pairs(classes, 10, 0.5, seed=0)


def test_pair_data_holds_the_used_images_and_round_trips(tmp_path, grid_classes, write_file):
    src = tmp_path / "s.h5"
    images = write_file(src, classes=grid_classes(HUE_GRID), chunks=(8, 64, 64, 3), compression="gzip")
    classes = grid_classes(HUE_GRID)
    data = pair_data(src, classes, 200, 0.1, seed=5)
    x, y, split = make_pairs(classes, 200, 0.1, seed=5)
    np.testing.assert_array_equal(data.source[data.x], x)
    np.testing.assert_array_equal(data.source[data.y], y)
    np.testing.assert_array_equal(data.split, split)
    np.testing.assert_array_equal(data.source, np.unique(np.concatenate([x, y])))
    np.testing.assert_array_equal(data.images, images[data.source])
    np.testing.assert_array_equal(data.classes, classes[data.source])
    assert data.attrs == {
        "seed": 5,
        "n_pairs": 200,
        "test_fraction": 0.1,
        "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
    }
    write_pairs(tmp_path / "p.h5", data)
    back = load_pairs(tmp_path / "p.h5")
    np.testing.assert_array_equal(back.images, data.images)
    assert back.attrs == data.attrs
    assert not set(back.image_rows(TRAIN)) & set(back.image_rows(TEST))


def test_pairs_stage_writes_a_valid_pairs_file(
    tmp_path, monkeypatch, capsys, grid_classes, params_file, run_stage, write_file
):
    src = tmp_path / "s.h5"
    write_file(src, classes=grid_classes(HUE_GRID))
    out = tmp_path / "data" / "pairs.h5"
    code, text = run_stage(
        "pairs",
        "--data",
        src,
        "--out",
        out,
        "--params",
        params_file(tmp_path, n_pairs=300, test_fraction=0.2, split_seed=4, seed=9),
    )
    assert code == 0, text
    data = load_pairs(out)
    check_invariants(data.classes, data.x, data.y, data.split, 300, 0.2)
    assert data.attrs["seed"] == 4  # the split seed: the training seed (9) does not choose pairs
    assert sorted(p.name for p in out.parent.iterdir()) == ["pairs.h5"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"test_fraction": 1.5}, "error: param test_fraction=1.5 is not allowed"),
        ({"n_pairs": 10_000}, "error: the train split allows only"),
        ({"n_pairs": "many"}, "error: param n_pairs='many' in params.yaml is not valid"),
    ],
)
def test_pairs_stage_fails_in_one_line_and_leaves_no_output(
    tmp_path, monkeypatch, capsys, overrides, message, params_file, run_stage, write_file
):
    src = tmp_path / "s.h5"
    write_file(src)
    out = tmp_path / "pairs.h5"
    out.write_bytes(b"left over from an earlier run")
    code, text = run_stage("pairs", "--data", src, "--out", out, "--params", params_file(tmp_path, **overrides))
    assert code == 1
    assert text.startswith(message) and text.count("\n") == 1
    assert not out.exists()


def test_pairs_stage_rejects_a_file_off_the_contract(tmp_path, monkeypatch, capsys, params_file, run_stage):
    src = tmp_path / "s.h5"
    src.write_text("not hdf5")
    out = tmp_path / "pairs.h5"
    code, text = run_stage("pairs", "--data", src, "--out", out, "--params", params_file(tmp_path, n_pairs=20))
    assert code == 1 and text.startswith(f"error: Shapes3D file {src} is not a readable HDF5 file")
    assert not out.exists()


def test_pairs_stage_refuses_a_nan_label_in_one_line(
    tmp_path, monkeypatch, capsys, grid_classes, params_file, run_stage, write_file
):
    src = tmp_path / "s.h5"
    labels = classes_to_values(grid_classes())
    labels[3, 0] = np.nan
    write_file(src, labels=labels)
    out = tmp_path / "pairs.h5"
    code, text = run_stage("pairs", "--data", src, "--out", out, "--params", params_file(tmp_path, n_pairs=20))
    assert code == 1 and text.count("\n") == 1
    assert text.startswith(f"error: Shapes3D file {src}: label floor_hue=nan at row 3 is not a finite number")
    assert not out.exists()
