"""Windowed-centroid source catalogs on small synthetic images with known positions."""

import numpy as np
import pytest

from ceers_nircam.steps import sourcecat


def _image(positions, fluxes, shape=(200, 200), sigma=1.2, noise=1.0, seed=3):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    img = rng.normal(10.0, noise, shape)
    for (x, y), f in zip(positions, fluxes):
        img += f / (2 * np.pi * sigma**2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return img, np.full(shape, noise)


def _grid(n=5, shape=200, seed=4):
    rng = np.random.default_rng(seed)
    pos = np.linspace(25, shape - 25, n)
    x, y = np.meshgrid(pos, pos)
    return np.column_stack([x.ravel() + rng.uniform(-0.5, 0.5, n * n),
                            y.ravel() + rng.uniform(-0.5, 0.5, n * n)])


def test_windowed_centroids_recover_subpixel_positions_0_based():
    pos = _grid()
    img, err = _image(pos, np.full(len(pos), 3000.0))
    cat = sourcecat.find_sources(img, err, np.zeros(img.shape, bool), sourcecat.DetectionParams())
    assert len(cat) == len(pos)
    order = np.lexsort((np.round(cat["x"]), np.round(cat["y"])))
    ref = np.lexsort((np.round(pos[:, 0]), np.round(pos[:, 1])))
    dx = np.asarray(cat["x"])[order] - pos[ref, 0]
    dy = np.asarray(cat["y"])[order] - pos[ref, 1]
    # S/N ~ 250 per source: windowed centroids good to a few hundredths of a pixel.
    assert np.max(np.hypot(dx, dy)) < 0.03
    assert np.all(np.diff(cat["flux"]) <= 0)  # brightest first


@pytest.mark.parametrize("thresh, expect", [(4.0, 25), (200.0, 0)])
def test_detection_threshold_is_in_units_of_the_smoothed_noise(thresh, expect):
    # Peak of a 150-count source after smoothing is ~13 sigma of the smoothed noise.
    pos = _grid()
    img, err = _image(pos, np.full(len(pos), 150.0))
    params = sourcecat.DetectionParams(detect_thresh=thresh, snr_threshold=0.0)
    assert len(sourcecat.find_sources(img, err, np.zeros(img.shape, bool), params)) == expect


def test_faint_sources_below_the_snr_threshold_are_dropped():
    pos = _grid()
    fluxes = np.where(np.arange(len(pos)) % 2 == 0, 3000.0, 110.0)
    img, err = _image(pos, fluxes)
    params = sourcecat.DetectionParams(detect_thresh=3.0, detect_minarea=5, snr_threshold=30.0)
    cat = sourcecat.find_sources(img, err, np.zeros(img.shape, bool), params)
    assert len(cat) == 13 and np.min(cat["snr"]) >= 30.0


def test_masked_pixels_neither_detect_nor_pull_centroids():
    pos = _grid()
    img, err = _image(pos, np.full(len(pos), 3000.0))
    mask = np.zeros(img.shape, bool)
    img[100:104, 10:14] = 1e6  # a hot block, flagged
    mask[100:104, 10:14] = True
    img[pos[0, 1].astype(int), pos[0, 0].astype(int) + 3] = np.nan  # a NaN beside a source
    cat = sourcecat.find_sources(img, err, mask, sourcecat.DetectionParams())
    assert len(cat) == len(pos)
    assert np.all(np.hypot(cat["x"] - 12, cat["y"] - 102) > 5)


def test_blank_image_gives_an_empty_catalog_with_the_columns():
    img, err = _image([], [])
    cat = sourcecat.find_sources(img, err, np.zeros(img.shape, bool), sourcecat.DetectionParams())
    assert len(cat) == 0 and {"x", "y", "flux", "snr"} <= set(cat.colnames)


def test_deblending_splits_a_close_pair():
    pos = np.array([[100.0, 100.0], [107.0, 100.0]])
    img, err = _image(pos, [5000.0, 5000.0], sigma=1.0)
    split = sourcecat.find_sources(img, err, np.zeros(img.shape, bool), sourcecat.DetectionParams())
    merged = sourcecat.find_sources(img, err, np.zeros(img.shape, bool),
                                    sourcecat.DetectionParams(deblend=0))
    assert len(split) == 2 and len(merged) == 1
    np.testing.assert_allclose(np.sort(split["x"]), pos[:, 0], atol=0.1)


def test_bad_pixel_mask_takes_do_not_use_and_saturated():
    from stdatamodels.jwst.datamodels import dqflags

    dq = np.array([0, dqflags.pixel["DO_NOT_USE"], dqflags.pixel["SATURATED"],
                   dqflags.pixel["JUMP_DET"]], dtype=np.uint32)
    np.testing.assert_array_equal(sourcecat.bad_pixel_mask(dq), [False, True, True, False])


def test_a_single_source_gives_a_one_row_catalog():
    img, err = _image([(100.3, 99.6)], [3000.0])
    cat = sourcecat.find_sources(img, err, np.zeros(img.shape, bool), sourcecat.DetectionParams())
    assert len(cat) == 1
    assert cat["x"][0] == pytest.approx(100.3, abs=0.03) and cat["y"][0] == pytest.approx(99.6, abs=0.03)
    assert cat["weight"][0] == pytest.approx(1.0 / cat["pos_err"][0] ** 2)
