"""The offline Shapes3D renderer: grids, factor sensitivity, distinctness, determinism, hues, file layout.

Everything runs on tiny grids; the full-grid speed and memory are a benchmark in the note, not a test.
"""

import colorsys
import os

import h5py
import numpy as np
import pytest

from dismi.data.factors import FACTORS, SIZES, VALUES, classes_to_values, index_to_classes, values_to_classes
from dismi.data.shapes3d import read_images, validate_file
from dismi.synthetic import render as R
from dismi.synthetic.compose import GRIDS, check_classes, image_blocks, make_grid
from dismi.synthetic.raytrace import SKY_RGB
from dismi.synthetic.render import write_synthetic


def render(classes) -> np.ndarray:
    """(N, 6) classes -> (N, 64, 64, 3) uint8 images, in memory: what write_synthetic writes, for comparisons."""
    classes = check_classes(classes)
    if not len(classes):
        return np.empty((0, 64, 64, 3), dtype=np.uint8)
    return np.concatenate(list(image_blocks(classes)))


TINY = make_grid([[0, 5], [2, 7], [1, 8], [0, 7], [0, 1, 2, 3], [0, 7, 14]])  # 2x2x2x2x4x3 = 192 images


def _digests(images):
    return {im.tobytes() for im in images}


# --- grids -----------------------------------------------------------------------------------------


def test_full_grid_is_the_official_order():
    full = GRIDS["full"]
    assert full.shape == (480_000, 6) and full.dtype == np.int64
    np.testing.assert_array_equal(full, index_to_classes(np.arange(480_000)))


def test_small_grid_is_a_reduced_grid_with_many_pairs():
    small = GRIDS["small"]
    assert small.dtype == np.int64 and 5_000 <= len(small) <= 20_000
    index = np.ravel_multi_index(tuple(small.T), SIZES)
    assert (np.diff(index) > 0).all()  # official order, no repeats
    assert len(np.unique(small[:, 4])) == 4  # every shape
    for f in range(3):
        assert len(np.unique(small[:, f])) >= 5  # enough hues for pairs that differ
    # every (scale, shape, orientation) group holds the same, large number of hue combinations
    _, counts = np.unique(small[:, 3:], axis=0, return_counts=True)
    assert counts.min() == counts.max() >= 100
    assert set(GRIDS) >= {"full", "small"}


def test_make_grid_orders_orientation_fastest_and_checks_its_input():
    assert TINY.shape == (192, 6)
    np.testing.assert_array_equal(TINY[:3, 5], [0, 7, 14])
    np.testing.assert_array_equal(TINY[:4, 4], [0, 0, 0, 1])
    assert (np.diff(np.ravel_multi_index(tuple(TINY.T), SIZES)) > 0).all()
    with pytest.raises(ValueError, match="orientation"):
        make_grid([[0], [0], [0], [0], [0], [15]])
    with pytest.raises(ValueError, match="distinct"):
        make_grid([[0, 0], [0], [0], [0], [0], [0]])
    with pytest.raises(ValueError, match="one index list per factor"):
        make_grid([[0]] * 5)
    with pytest.raises(KeyError):
        GRIDS["huge"]


# --- images ----------------------------------------------------------------------------------------


def test_render_shape_dtype_and_bad_input():
    images = render(TINY[:5])
    assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8
    assert render(np.empty((0, 6), dtype=np.int64)).shape == (0, 64, 64, 3)
    with pytest.raises(ValueError, match="shape"):
        render(np.zeros((3, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="scale"):
        render(np.array([[0, 0, 0, 8, 0, 0]]))


@pytest.mark.parametrize("base", [[3, 6, 1, 4, 0, 7], [8, 2, 5, 0, 1, 0], [0, 9, 4, 7, 3, 14]])
def test_every_factor_visibly_changes_the_image(base):
    """Changing any single factor to any other value changes many pixels by a visible amount."""
    rows = [base]
    for f, size in enumerate(SIZES):
        for v in range(size):
            if v != base[f]:
                row = list(base)
                row[f] = v
                rows.append(row)
    images = render(np.array(rows)).astype(np.int16)
    changed = (np.abs(images[1:] - images[0]).max(axis=-1) > 10).sum(axis=(1, 2))
    labels = [f"{FACTORS[next(f for f in range(6) if r[f] != base[f])]}" for r in rows[1:]]
    weak = [(lab, int(c)) for lab, c in zip(labels, changed) if c < 40]
    assert not weak, f"factor changes that barely show: {weak}"


def test_no_two_factor_combinations_render_the_same_image():
    # every geometry of two scales (all shapes, all orientations) plus the tiny grid's hue mixes
    geo = make_grid([[4], [1], [7], [0, 7], list(range(4)), list(range(15))])
    hues = make_grid([list(range(10)), list(range(10)), list(range(10)), [3], [2], [5]])
    for classes in (geo, hues, TINY):
        assert len(_digests(render(classes))) == len(classes)


def test_rendering_is_deterministic_and_independent_of_the_batch():
    first = render(TINY)
    again = render(TINY)
    assert first.tobytes() == again.tobytes()
    # the same image rendered alone, in another order or among other images has the same bytes
    pick = np.array([191, 0, 77, 5])
    np.testing.assert_array_equal(render(TINY[pick]), first[pick])
    np.testing.assert_array_equal(render(TINY[7:8])[0], first[7])
    mixed = np.concatenate([TINY[:10], make_grid([[9], [9], [9], [5], [2], [3]])])
    np.testing.assert_array_equal(render(mixed)[:10], first[:10])


def _hue_at(image, row, col):
    h, s, v = colorsys.rgb_to_hsv(*(image[row, col] / 255.0))
    return h, s, v


def _circular_gap(a, b):
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


@pytest.mark.parametrize("factor, pixel", [(0, (44, 60)), (1, (20, 32)), (2, (44, 32))])
def test_each_hue_colours_its_region_with_a_saturated_colour(factor, pixel):
    """floor_hue colours the floor (lower right), wall_hue the wall (above the object), object_hue
    the object (its centre); each pixel follows its own hue only, fully saturated."""
    others = [[1], [4], [7]]
    for hue in range(10):
        per_factor = [list(o) for o in others] + [[7], [0], [0, 7, 14]]  # big box, three views
        per_factor[factor] = [hue]
        images = render(make_grid(per_factor))
        for im in images:
            h, s, v = _hue_at(im, *pixel)
            assert _circular_gap(h, VALUES[factor][hue]) < 0.02, (FACTORS[factor], hue, h)
            assert s > 0.95 and v > 0.6
    # the region's pixel does not move when the other two hues change
    per_factor = [list(range(0, 10, 3))] * 3 + [[7], [0], [7]]
    grid = make_grid(per_factor)
    images = render(grid)
    for hue in range(0, 10, 3):
        same = images[grid[:, factor] == hue][:, pixel[0], pixel[1]]
        assert (same == same[0]).all()


def test_sky_band_is_light_blue_everywhere():
    images = render(TINY)
    np.testing.assert_array_equal(images[:, :4].reshape(-1, 3), np.broadcast_to(SKY_RGB, (len(TINY) * 4 * 64, 3)))


def test_shadow_darkens_the_floor():
    """The floor beside the object (right, towards the camera) is darker with a big object than with a
    small one, and darker than the same spot of an object-free view of the room far from it."""
    big, small = render(np.array([[0, 0, 0, 7, 1, 7], [0, 0, 0, 0, 1, 7]])).astype(int)
    red = big[:, :, 0]
    assert red[48:60, 32:56].min() < 0.45 * red[48:60, 4:12].mean()  # a dark shadow on a red floor
    assert big[48:60, 32:56, 0].mean() < small[48:60, 32:56, 0].mean()


# --- the file --------------------------------------------------------------------------------------


def test_write_synthetic_official_layout(tmp_path):
    path = tmp_path / "sub" / "shapes3d.h5"
    assert write_synthetic(path, grid=TINY, progress=False) == path
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["images", "labels"]
        images, labels = f["images"], f["labels"]
        assert images.dtype == np.uint8 and images.shape == (192, 64, 64, 3)
        assert labels.dtype == np.float64 and labels.shape == (192, 6)
        assert images.compression == "gzip"
        data, values = images[()], labels[()]
        one = images[191]  # the last, partial chunk reads back too
    np.testing.assert_array_equal(values, classes_to_values(TINY))
    np.testing.assert_array_equal(values_to_classes(values), TINY)  # on the official value grid
    np.testing.assert_array_equal(data, render(TINY))  # image order consistent with labels
    np.testing.assert_array_equal(one, data[191])
    assert sorted(p.name for p in path.parent.iterdir()) == ["shapes3d.h5"]  # no temp file left


def test_write_synthetic_passes_the_contract_validator(tmp_path):
    path = write_synthetic(tmp_path / "a.h5", grid=TINY, progress=False)
    np.testing.assert_array_equal(validate_file(path), TINY)
    np.testing.assert_array_equal(read_images(path, np.array([3, 100, 191])), render(TINY[[3, 100, 191]]))


def test_write_synthetic_any_grid_and_chunking(tmp_path):
    """A non-product list of classes, odd chunk sizes and one worker give the same images."""
    rows = TINY[[0, 3, 4, 50, 51, 120, 191]]
    for chunk_rows, workers in ((1, 1), (4, 2), (100, 3)):
        path = write_synthetic(
            tmp_path / f"g{chunk_rows}.h5", grid=rows, progress=False, chunk_rows=chunk_rows, workers=workers
        )
        with h5py.File(path, "r") as f:
            np.testing.assert_array_equal(f["images"][()], render(rows))
            np.testing.assert_array_equal(f["labels"][()], classes_to_values(rows))
            assert f["images"].chunks[0] == min(chunk_rows, len(rows))
    with pytest.raises(ValueError, match="official order"):
        write_synthetic(tmp_path / "bad.h5", grid=rows[::-1], progress=False)
    assert not (tmp_path / "bad.h5").exists()


def test_write_synthetic_can_write_the_real_files_chunk_layout(tmp_path, monkeypatch):
    # What h5py chooses by itself for the full file's shape, hence most likely the real file's layout.
    with h5py.File(tmp_path / "probe.h5", "w", driver="core", backing_store=False) as f:
        assert (
            f.create_dataset("i", shape=(480_000, 64, 64, 3), dtype=np.uint8, chunks=True).chunks == R.OFFICIAL_CHUNKS
        )
    expected = render(TINY)
    # The real chunks hold 15,000 rows; cut them to 50 here so the grid spans several, the last one partial.
    for rows in (R.OFFICIAL_CHUNKS[0], 50):
        monkeypatch.setattr(R, "OFFICIAL_CHUNKS", (rows, 4, 4, 1))
        path = write_synthetic(tmp_path / f"official{rows}.h5", grid=TINY, progress=False, chunks="official")
        with h5py.File(path, "r") as f:
            assert f["images"].chunks == (min(rows, 192), 4, 4, 1) and f["images"].compression == "gzip"
            np.testing.assert_array_equal(f["images"][()], expected)
            np.testing.assert_array_equal(f["labels"][()], classes_to_values(TINY))
        np.testing.assert_array_equal(validate_file(path), TINY)
        np.testing.assert_array_equal(read_images(path, np.array([3, 100, 191])), expected[[3, 100, 191]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["official15000.h5", "official50.h5"]  # no temporaries
    with pytest.raises(ValueError, match="chunks must be one of"):
        write_synthetic(tmp_path / "bad.h5", grid=TINY, progress=False, chunks="auto")


def test_write_synthetic_is_deterministic(tmp_path):
    a = write_synthetic(tmp_path / "a.h5", grid=TINY, progress=False)
    b = write_synthetic(tmp_path / "b.h5", grid=TINY, progress=False)
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert fa["images"][()].tobytes() == fb["images"][()].tobytes()


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = R._deflate

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(R, "_deflate", flaky)
    path = tmp_path / "shapes3d.h5"
    with pytest.raises(KeyboardInterrupt):
        write_synthetic(path, grid=TINY, progress=False, chunk_rows=8)
    assert os.listdir(tmp_path) == []


def test_write_synthetic_small_grid_by_name(tmp_path):
    path = write_synthetic(tmp_path / "small.h5", grid="small", progress=False)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(values_to_classes(f["labels"][()]), GRIDS["small"])
        assert f["images"].shape == (len(GRIDS["small"]), 64, 64, 3)
        sample = np.array([0, 1234, len(GRIDS["small"]) - 1])
        np.testing.assert_array_equal(f["images"][sample], render(GRIDS["small"][sample]))
