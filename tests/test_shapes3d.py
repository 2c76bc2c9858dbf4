"""The Shapes3D contract (validate_file) and the chunk-aware reader (read_images), on tiny reduced grids."""

import tracemalloc

import h5py
import numpy as np
import pytest

from dismi.data import shapes3d
from dismi.data.factors import N_IMAGES, SIZES, classes_to_values, index_to_classes, values_to_classes
from dismi.data.shapes3d import read_images, validate_file
from dismi.util.errors import DismiError


def assert_one_line_error(path, match):
    with pytest.raises(DismiError, match=match) as e:
        validate_file(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_good_reduced_grid_gives_class_indices(tmp_path, grid_classes, write_file):
    write_file(tmp_path / "s.h5")
    classes = validate_file(tmp_path / "s.h5")
    assert classes.dtype == np.int64
    np.testing.assert_array_equal(classes, grid_classes())


def test_full_size_file_validates_without_reading_images(tmp_path):
    # A chunked images dataset that was never written stays unallocated: a 480,000-image file in a few MB.
    path = tmp_path / "full.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(N_IMAGES, 64, 64, 3), dtype=np.uint8, chunks=(100, 64, 64, 3))
        f.create_dataset("labels", data=classes_to_values(index_to_classes(np.arange(N_IMAGES))))
    assert path.stat().st_size < 50_000_000
    classes = validate_file(path)
    assert classes.shape == (N_IMAGES, 6)
    np.testing.assert_array_equal(classes.max(axis=0) + 1, SIZES)
    rows = np.array([0, 99, 100, 479_999])
    assert read_images(path, rows).shape == (4, 64, 64, 3)


def test_missing_file(tmp_path):
    assert_one_line_error(tmp_path / "nope.h5", "not found")


@pytest.mark.parametrize("key", ["images", "labels"])
def test_missing_key(tmp_path, key, write_file):
    path = tmp_path / "s.h5"
    write_file(path)
    with h5py.File(path, "a") as f:
        del f[key]
    assert_one_line_error(path, f"no dataset '{key}'")


def test_images_of_wrong_dtype(tmp_path, grid_classes, write_file):
    path = tmp_path / "s.h5"
    write_file(path, images=np.zeros((len(grid_classes()), 64, 64, 3), dtype=np.float32))
    assert_one_line_error(path, "images have dtype float32, expected uint8")


def test_labels_of_wrong_dtype(tmp_path, grid_classes, write_file):
    path = tmp_path / "s.h5"
    write_file(path, labels=classes_to_values(grid_classes()).astype(np.float32))
    assert_one_line_error(path, "labels have dtype float32, expected float64")


def test_images_of_wrong_shape(tmp_path, grid_classes, write_file):
    path = tmp_path / "s.h5"
    write_file(path, images=np.zeros((len(grid_classes()), 64, 64, 1), dtype=np.uint8))
    assert_one_line_error(path, r"images have shape \(96, 64, 64, 1\)")


def test_labels_of_wrong_width(tmp_path, grid_classes, write_file):
    path = tmp_path / "s.h5"
    write_file(path, labels=classes_to_values(grid_classes())[:, :5].copy())
    assert_one_line_error(path, r"labels have shape \(96, 5\), expected \(96, 6\)")


def test_fewer_labels_than_images(tmp_path, grid_classes, write_file):
    path = tmp_path / "s.h5"
    write_file(path, labels=classes_to_values(grid_classes())[:-1])
    assert_one_line_error(path, r"labels have shape \(95, 6\)")


def test_off_grid_label(tmp_path, grid_classes, write_file):
    labels = classes_to_values(grid_classes())
    labels[7, 3] = 0.8  # between scale 0.75 and 0.8214...
    path = tmp_path / "s.h5"
    write_file(path, labels=labels)
    assert_one_line_error(path, "scale=.*0.8.* at row 7 is not on the official grid")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_values_to_classes_refuses_nan_and_inf_naming_column_and_row(value, grid_classes):
    labels = classes_to_values(grid_classes())
    labels[7, 2] = value
    with pytest.raises(ValueError, match=rf"^label object_hue={value!r} at row 7 is not a finite number$") as e:
        values_to_classes(labels)
    assert "\n" not in str(e.value)


def test_nan_label_breaks_the_contract(tmp_path, grid_classes, write_file):
    labels = classes_to_values(grid_classes())
    labels[7, 3] = np.nan  # NaN compares false with everything: it must not pass as "close to the grid"
    path = tmp_path / "s.h5"
    write_file(path, labels=labels)
    assert_one_line_error(path, "label scale=nan at row 7 is not a finite number")


def test_out_of_order_images(tmp_path, grid_classes, write_file):
    classes = grid_classes()
    classes[[10, 11]] = classes[[11, 10]]
    path = tmp_path / "s.h5"
    write_file(path, classes=classes)
    assert_one_line_error(path, "row 11 .* does not come after row 10")


def test_repeated_combination(tmp_path, grid_classes, write_file):
    classes = grid_classes()
    classes[5] = classes[4]
    path = tmp_path / "s.h5"
    write_file(path, classes=classes)
    assert_one_line_error(path, "row 5 .* does not come after row 4")


def test_truncated_hdf5(tmp_path, write_file):
    path = tmp_path / "s.h5"
    write_file(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_one_line_error(path, "not a readable HDF5 file")


def test_not_hdf5_at_all(tmp_path):
    path = tmp_path / "s.h5"
    path.write_text("<html>404 Not Found</html>\n")
    assert_one_line_error(path, "not a readable HDF5 file")


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"chunks": (5, 64, 64, 3), "compression": "gzip"},
        {"chunks": (1, 64, 64, 3), "compression": "gzip"},
        {"chunks": (40, 4, 4, 1), "compression": "gzip"},
        {"chunks": (96, 4, 4, 1), "compression": "gzip"},
    ],
    ids=["contiguous", "chunks-of-5", "chunks-of-1", "gzip-40x4x4x1", "gzip-96x4x4x1"],
)
def test_read_images_picks_the_rows(tmp_path, monkeypatch, options, write_file):
    # A small slab cap makes long runs of blocks split into several reads, and makes the (N, 4, 4, 1)
    # chunks (the real file's likely (15000, 4, 4, 1) layout: chunks smaller than an image) span more
    # rows than the cap.
    monkeypatch.setattr(shapes3d, "_MAX_SLAB_ROWS", 12)
    path = tmp_path / "s.h5"
    images = write_file(path, **options)
    rng = np.random.default_rng(1)
    for rows in (
        np.arange(96),
        np.sort(rng.choice(96, 30, replace=False)),
        np.array([0, 95]),
        np.arange(20, 60),
        np.array([], dtype=np.int64),
    ):
        np.testing.assert_array_equal(read_images(path, rows), images[rows])


@pytest.mark.parametrize("rows", [[3, 2], [2, 2], [0, 96], [-1, 3]])
def test_read_images_rejects_bad_rows(tmp_path, rows, write_file):
    path = tmp_path / "s.h5"
    write_file(path)
    with pytest.raises(ValueError):
        read_images(path, np.array(rows))


@pytest.mark.parametrize(
    "chunks, cap, rows",
    [
        ((24, 4, 4, 1), 12, np.array([0, 30, 60, 90])),  # chunk rows above the cap: one chunk row-block a slab
        ((4, 64, 64, 3), 12, np.arange(96)),  # a selection spanning 8 times the cap
    ],
    ids=["gzip-24x4x4x1", "gzip-4-images"],
)
def test_read_images_holds_at_most_one_slab_at_a_time(tmp_path, monkeypatch, chunks, cap, rows, write_file):
    monkeypatch.setattr(shapes3d, "_MAX_SLAB_ROWS", cap)
    path = tmp_path / "s.h5"
    images = write_file(path, chunks=chunks, compression="gzip")
    slab = max(cap, chunks[0]) * images[0].nbytes  # the largest read the cap allows
    tracemalloc.start()
    try:
        got = read_images(path, rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, images[rows])
    # The result, one slab, and small change; a second slab (or a copy of the picked rows) would exceed it.
    assert peak < got.nbytes + 1.5 * slab, (peak, got.nbytes, slab)
