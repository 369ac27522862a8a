"""The sky pedestal, variance and variance-hole functions of stage3/skywcsvar.py on small arrays."""

import os

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from ceers_nircam.background import EXPOSURE_HALO_EDGES
from ceers_nircam.cli import CeersError
from ceers_nircam.steps import skyvar


def _sky(shape=(512, 512), sigma=0.015, level=0.17, seed=1, row_noise=0.0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    sky = level * (1 + 0.03 * (x / shape[1] - 0.5))
    noise = rng.normal(0, sigma, shape)
    noise += rng.normal(0, row_noise, (shape[0], 1))  # 1/f-like row offsets
    return (sky + noise).astype(np.float32), sky


def test_pixel_variance_recovers_the_noise_of_a_background_subtracted_image():
    image, sky = _sky()
    bkgsub = image - sky
    masked = np.zeros(image.shape, bool)
    bkgsub[::50, ::50] += 1.0  # cosmic rays: clipped
    assert skyvar.pixel_variance(bkgsub, masked) == pytest.approx(0.015**2, rel=0.01)


def test_block_variance_depends_on_how_the_noise_correlates():
    white, sky = _sky(seed=2)
    rows, _ = _sky(seed=3, sigma=0.012, row_noise=0.009)  # same per-pixel variance
    masked = np.zeros(white.shape, bool)
    var_white, used = skyvar.block_variance(white - sky, masked)
    var_rows, _ = skyvar.block_variance(rows - sky, masked)
    assert used[:511, :511].all()
    # White noise: block sums over 49 give the pixel variance (the biweight reads 1.4% high).
    assert var_white == pytest.approx(0.015**2, rel=0.05)
    # Row-correlated noise of the same per-pixel variance: block sums read it far higher.
    assert var_rows > 2.5 * var_white
    assert skyvar.pixel_variance(rows - sky, masked) == pytest.approx(0.015**2, rel=0.03)


def test_block_variance_leaves_out_blocks_touching_masked_pixels():
    image, sky = _sky(seed=4)
    bkgsub = image - sky
    masked = np.zeros(image.shape, bool)
    bkgsub[100:200, 100:200] += 0.5  # a source
    masked[98:202, 98:202] = True
    var, used = skyvar.block_variance(bkgsub, masked)
    assert not used[masked].any()
    assert var == pytest.approx(0.015**2, rel=0.05)


def test_sky_pedestal_is_the_peak_of_the_unmasked_histogram():
    image, sky = _sky(seed=5)
    usable = np.ones(image.shape, bool)
    image[:25] += np.random.default_rng(6).exponential(0.05, (25, 512)).astype(np.float32)
    fit = skyvar.sky_pedestal(image, usable, skyvar.SkyVarParams())
    assert fit.method == "gaussian"
    assert fit.value == pytest.approx(0.17, abs=6e-4)
    assert fit.popt[1] == fit.value and fit.counts.sum() > 0.9 * image.size


def test_rnoise_factor_makes_the_mean_the_sky_variance():
    var_rnoise = np.full((100, 100), 2e-5, np.float32)
    var_rnoise[:10] = 5e-5  # jump-split ramps: noisier, not in the pixels used
    pixels = np.zeros(var_rnoise.shape, bool)
    pixels[20:] = True
    factor, mean = skyvar.rnoise_factor(2.4e-4, var_rnoise, pixels)
    assert mean == pytest.approx(2e-5)
    assert factor == pytest.approx(12.0)


def test_sky_poisson_share_is_removed_and_never_leaves_a_zero():
    data = np.array([0.17, 0.34, 0.17, 0.10, 1.0, np.nan], np.float32)
    sky = np.full(data.shape, 0.17, np.float32)
    var_poisson = (data * 1e-3).astype(np.float32)  # proportional to the signal
    var_poisson[4] = 0.0  # a hole stays a hole
    out, removed = skyvar.remove_sky_poisson(var_poisson, data, sky)
    np.testing.assert_allclose(out[1], 0.17e-3, rtol=1e-5)  # half of it was sky
    assert out[0] > 0 and out[3] > 0 and out[0] == pytest.approx(0.17e-6, rel=1e-4)
    assert out[4] == 0 and np.isnan(out[5])
    assert removed > 0


def test_zero_variances_become_infinite_unless_an_array_is_all_zero():
    model = datamodels.ImageModel((4, 4))
    model.var_rnoise = np.full((4, 4), 1e-4, np.float32)
    model.var_rnoise[0, 0] = 0
    model.var_poisson = np.full((4, 4), 2e-4, np.float32)
    model.var_poisson[1, 2] = 0
    model.var_flat = np.zeros((4, 4), np.float32)
    counts = skyvar.fill_variance_holes(model)
    assert counts == {"var_rnoise": 1, "var_poisson": 1, "var_flat": -1}
    assert np.isinf(model.var_rnoise[0, 0]) and np.isinf(model.var_poisson[1, 2])
    assert np.all(model.var_flat == 0)


@pytest.mark.parametrize("name,match,bkgsub", [
    ("jw01345001001_02201_00001_nrca1_a3001_crf.fits", "jw01345001001_02201_00001_nrca1_a3001_match.fits",
     "jw01345001001_02201_00001_nrca1_a3001_bkgsub1.fits"),
    ("jw01345001001_02201_00001_nrca1_crf.fits", "jw01345001001_02201_00001_nrca1_match.fits",
     "jw01345001001_02201_00001_nrca1_bkgsub1.fits"),
])
def test_product_paths(name, match, bkgsub):
    paths = skyvar.product_paths(f"calibrated/{name}", skyvar.SkyVarParams(mask_dir="masks"))
    assert paths["match"] == f"calibrated/{match}"
    assert paths["bkgsub"] == f"calibrated/{bkgsub}"
    assert paths["fmask"] == "masks/jw01345001001_02201_00001_nrca1_rate_1fmask.fits"
    assert paths["wcs"] == "calibrated/jw01345001001_02201_00001_nrca1_tweakreg.asdf"


def test_product_paths_refuse_other_files():
    with pytest.raises(CeersError, match="_crf.fits"):
        skyvar.product_paths("calibrated/x_cal.fits", skyvar.SkyVarParams())


def test_apply_on_a_small_image(tmp_path):
    shape = (400, 400)
    image, sky = _sky(shape, seed=8)
    rng = np.random.default_rng(9)
    for _ in range(30):  # compact sources
        yc, xc = rng.integers(20, 380, 2)
        image[yc - 2:yc + 3, xc - 2:xc + 3] += 0.3
    model = datamodels.ImageModel(shape)
    model.data = image
    model.dq = np.zeros(shape, np.uint32)
    model.dq[:4] = datamodels.dqflags.pixel["REFERENCE_PIXEL"]
    model.var_rnoise = np.full(shape, 2e-5, np.float32)
    model.var_poisson = (np.clip(image, 0, None) * 1e-3).astype(np.float32)
    model.var_flat = np.full(shape, 1e-8, np.float32)
    model.var_poisson[200, 200] = 0
    params = skyvar.SkyVarParams(clip_box=50)
    model, status = skyvar.apply(model, params, np.zeros(shape, np.uint8))
    assert status.values["pedestal"] == pytest.approx(0.17, abs=1e-3)
    assert status.values["factor"] * 2e-5 == pytest.approx(0.015**2, rel=0.03)
    assert np.all(model.dq[:4] & datamodels.dqflags.pixel["DO_NOT_USE"])
    assert np.isinf(model.var_poisson[200, 200])
    assert model.meta.background.level == status.values["pedestal"]
    assert set(status.products) == {"bkg", "bkgsub", "bits", "pedestal", "halo"}
    assert status.products["pedestal"].value == status.values["pedestal"]
    png = skyvar.plot_sky(str(tmp_path / "sky.png"), status.products, "test")
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 20000


@pytest.mark.parametrize("ped_halo", [False, True])
def test_pedestal_leaves_out_the_light_sources_spread_beyond_the_mask(ped_halo):
    # Sources with a wide halo, the 1/f mask over their cores only: the halo light raises the
    # histogram of the unmasked pixels; fitted on the masked flux and taken out, it does not.
    from test_background import _haloed_field

    field, halos, mask = _haloed_field(7)
    image = (field + 0.17).astype(np.float32)
    model = datamodels.ImageModel(image.shape)
    model.data = image
    model.dq = np.zeros(image.shape, np.uint32)
    model.var_rnoise = np.full(image.shape, 1e-4, np.float32)
    model.var_poisson = np.full(image.shape, 1e-5, np.float32)
    model.var_flat = np.full(image.shape, 1e-8, np.float32)
    fmask = np.where(mask, 2, 0).astype(np.uint8)
    params = skyvar.SkyVarParams(clip_box=50, ped_halo=ped_halo)
    _, status = skyvar.apply(model, params, fmask)
    error = status.values["pedestal"] - 0.17
    print(f"\nsource halos {'fitted' if ped_halo else 'left in'}: pedestal off by {error:+.5f} "
          f"(halo light over the unmasked pixels {halos[~mask].mean():.5f}; noise 0.01)")
    if ped_halo:
        assert abs(error) < 0.2 * halos[~mask].mean()
        assert len(status.products["halo"].weights) == len(EXPOSURE_HALO_EDGES) - 1
    else:
        assert status.products["halo"] is None
        assert error > 0.5 * halos[~mask].mean()
