"""Mosaic background: the CEERS config format, merged masks and the two backgrounds on a small
synthetic mosaic."""


import dataclasses
import re

import dr05_data
import numpy as np
import pytest

from ceers_nircam.cli import CeersError
from ceers_nircam.steps import mosaic_background as mb

SHARED_CONFIG = dr05_data.path("mosaic_background.cfg")
DR05_NIRCAM = mb.BandParams()


@dr05_data.needed
def test_the_dr05_config_parses():
    bands = mb.read_config(SHARED_CONFIG)
    assert set(bands) == {"nircam", "f606w", "f814w", "f105w", "f125w", "f140w", "f160w"}
    assert bands["nircam"] == DR05_NIRCAM
    assert bands["f606w"].tier_nsigma == (0.8, 0.8, 0.6, 0.6)
    assert bands["f160w"].tier_npixels == (5, 5, 1, 1)
    assert mb.band_params(bands, "f277w", True, "m.fits", SHARED_CONFIG) is bands["nircam"]
    assert mb.band_params(bands, "f125w", False, "h.fits", SHARED_CONFIG) is bands["f125w"]
    with pytest.raises(CeersError, match=r"no \[f435w\] section for h.fits"):
        mb.band_params(bands, "f435w", False, "h.fits", SHARED_CONFIG)


def _config(tmp_path, text):
    path = tmp_path / "bkg.cfg"
    path.write_text(text)
    return str(path)


NIRCAM = """[nircam]
bg_box_size = 10
bg_filter_size = 5
ring_radius_in = 80
ring_width = 4
tier_dilate_size = 33, 25, 21, 19
tier_nsigma = 1.5, 1.5, 1.5, 1.5
tier_npixels = 15, 10, 3, 1
"""


@pytest.mark.parametrize("text,message", [
    (NIRCAM + "\n[hst_deep]\nbg_box_size = 10\n", r"unknown band section \[hst_deep\]"),
    (NIRCAM + "bg_boxsize = 10\n", r"\[nircam\]: unknown key 'bg_boxsize'"),
    (NIRCAM.replace("bg_box_size = 10", "bg_box_size = ten"), r"bg_box_size = 'ten' is not a int"),
    (NIRCAM.replace("tier_npixels = 15, 10, 3, 1", "tier_npixels = 15, 10"), "tier_npixels|min_areas needs 4"),
    ("bg_box_size = 10\n", "not a readable config file"),
])
def test_bad_config_is_a_one_line_error(tmp_path, text, message):
    with pytest.raises(CeersError, match=message):
        mb.read_config(_config(tmp_path, text))


def test_nircam_section_parses_to_the_dr05_values(tmp_path):
    bands = mb.read_config(_config(tmp_path, NIRCAM + "\n[F160W]\ntier_nsigma = 0.8, 0.8, 0.5, 0.5\n"))
    assert bands["nircam"] == DR05_NIRCAM
    assert bands["f160w"].tier_nsigma == (0.8, 0.8, 0.5, 0.5)
    assert bands["f160w"].bg_box_size == 10  # the rest keeps the defaults


@pytest.mark.parametrize("header,band", [({"FILTER": "F150W"}, "f150w"),
                                         ({"FILTER1": "CLEAR1L", "FILTER2": "F814W"}, "f814w"),
                                         ({"FILTER1": "F606W", "FILTER2": "CLEAR2L"}, "f606w"),
                                         ({}, "")])
def test_band_of_a_header(header, band):
    assert mb.band_of(header) == band


def test_merge_masks_keeps_one_bit_per_band():
    a = np.zeros((4, 4), np.uint8)
    b = np.zeros((4, 4), np.uint8)
    a[0, 0], a[1, 1] = 1, 2  # off-detector only; a source
    b[1, 1], b[2, 2] = 4, 8
    merged = mb.merge_masks([a, b])
    assert merged[0, 0] == 0 and merged[1, 1] == 3 and merged[2, 2] == 2
    assert merged.dtype == np.uint16


def _mosaic(shape=(600, 700), seed=3, sigma=0.01):
    """A mosaic with empty margins, compact and extended sources and correlated noise."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = ndimage.uniform_filter(rng.normal(0, sigma * 2, shape), 2)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    scene = np.zeros(shape)
    for _ in range(80):
        yc, xc = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        size, peak = rng.choice([1.2, 3.0, 12.0]), rng.uniform(0.01, 0.3)
        scene += peak * np.exp(-((x - xc) ** 2 + (y - yc) ** 2) / (2 * size**2))
    off = np.zeros(shape, bool)
    off[:, :40] = True
    off[560:, :] = True
    image = np.where(off, np.nan, scene + noise).astype(np.float32)
    return image, scene, off, float(np.std(noise))


def test_first_and_final_backgrounds_remove_a_gradient_not_the_sources():
    image, scene, off, rms = _mosaic()
    y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    gradient = (3 * rms * (x / image.shape[1] + 0.5 * (y / image.shape[0]) ** 2)).astype(np.float32)
    band = mb.BandParams(ring_radius_in=40, ring_width=4, clip_box=50)
    results = {}
    for name, img in (("flat", image), ("gradient", image + gradient)):
        bkg1, bits = mb.first_background(img, off, band)
        assert np.all(bits[off] & 1) and np.all(np.isnan(bkg1[off]))
        merged = mb.merge_masks([bits])
        bkg, bkgmask, _ = mb.final_background(img, off, merged, band)
        assert np.all(bkgmask[off] & mb.OFF_DETECTOR)
        assert np.all((bkgmask[~off] & mb.SOURCES != 0) == (merged[~off] != 0))
        results[name] = (img - bkg, merged != 0)
    masked = results["flat"][1]
    bright = (scene > 0.5 * rms) & ~off
    assert masked[bright].mean() > 0.95
    assert masked[~off].mean() < 0.6
    # The gradient is gone where the background was measured: the difference of the two
    # subtracted mosaics (the same noise) is the gradient less what its model took.
    unmasked = ~off & ~masked & ~results["gradient"][1]
    residual = (results["gradient"][0] - results["flat"][0])[unmasked]
    assert np.sqrt(np.mean(residual**2)) < 0.05 * rms
    # No bias under the sources: the subtracted mosaic less the scene averages to zero there.
    under = results["flat"][0][masked & ~off] - scene[masked & ~off]
    assert abs(np.mean(under)) < 0.1 * rms


@pytest.mark.parametrize("iterations,limit", [(0, None), (1, 0.1), (2, 0.1)])
def test_the_halo_fit_takes_the_light_beyond_the_mask_out_of_the_background(iterations, limit):
    # Sources with 15% of their light in a wide halo, masked over their cores only: the
    # background measured in 10-pixel boxes takes the halos for sky and is too high under
    # and next to the sources (DR0.5, no halo fit); fitted and taken out first, it is not.
    from test_background import _haloed_field

    image, halos, mask = _haloed_field(5)
    off = np.zeros(image.shape, bool)
    off[:, :30] = True
    image[off] = np.nan
    band = dataclasses.replace(DR05_NIRCAM, halo_iterations=iterations)
    merged = mask.astype(np.uint16)
    bkg, _, halo = mb.final_background(image, off, merged, band)
    under = np.nanmean(bkg[mask & ~off]) / 0.01  # the true sky is 0; noise 0.01
    print(f"\nhalo iterations {iterations}: background under the sources {under:+.3f} pixel sigma")
    if limit is None:
        assert halo is None and under > 0.3
    else:
        assert len(halo.weights) == len(band.halo_edges) - 1
        assert abs(under) < limit


@pytest.mark.parametrize("halo_mask", [0.0, 0.2, 0.5])
def test_the_mask_grows_where_the_fitted_halo_is_bright(halo_mask):
    # The same sources: the halo light beyond their core masks stands above half the pixel
    # noise over a wide area that no tier finds; the fitted halo marks it.
    from test_background import _haloed_field

    image, halos, mask = _haloed_field(5)
    off = np.zeros(image.shape, bool)
    off[:, :30] = True
    image[off] = np.nan
    band = dataclasses.replace(DR05_NIRCAM, halo_mask=halo_mask)
    _, bkgmask, _ = mb.final_background(image, off, mask.astype(np.uint16), band)
    used = mb.source_pixels(bkgmask)
    bright = (halos > 0.5 * 0.01) & ~off
    coverage, share = used[bright].mean(), used[~off].mean()
    print(f"\nhalo mask at {halo_mask} background RMS: {coverage:.1%} of the pixels with halo light "
          f"above half the noise masked; {share:.1%} of the field masked, "
          f"{bright.mean():.1%} holds such light")
    assert np.all(used[mask & ~off]) and not np.any(bkgmask[~off] & mb.OFF_DETECTOR)
    grown = (bkgmask & mb.HALO) != 0
    if halo_mask == 0:
        assert not grown.any() and coverage < 0.2
    else:
        # Radial halos, as here, are fitted well: the grown pixels hold the light they were
        # predicted to hold.
        assert coverage > 0.95
        assert np.median(halos[grown]) > halo_mask * 0.01
        assert not np.any(grown & mask)


def test_covered_box():
    usable = np.zeros((10, 12), bool)
    usable[3:6, 4:9] = True
    assert mb.covered_box(usable) == (slice(3, 6), slice(4, 9))
    assert mb.covered_box(np.zeros((3, 3), bool)) is None


@pytest.mark.parametrize("name,stem", [("mosaics/ceers_nircam1_f150w_i2d.fits", "ceers_nircam1_f150w"),
                                       ("hst/egs_all_wfc3_ir_f160w_030mas_v1.9_drz.fits",
                                        "egs_all_wfc3_ir_f160w_030mas_v1.9")])
def test_output_names(name, stem):
    assert mb.output_path(name, "mbkgsub1", "out") == f"out/{stem}_mbkgsub1.fits"


def test_a_product_without_its_aperture_table_is_not_complete(tmp_path):
    """Products of a version that wrote no APERNOISE table are redone when radii are asked for;
    HST products (no ERR) never carry one."""
    from astropy.io import fits

    from ceers_nircam import apertures, history

    def product(name, *extensions):
        header = fits.Header()
        header["HISTORY"] = history.describe("mosaic_background", {"band": "f150w"})
        hdus = [fits.PrimaryHDU(header=header), *extensions]
        path = str(tmp_path / name)
        fits.HDUList(hdus).writeto(path)
        return path

    image = fits.ImageHDU(np.zeros((4, 4), np.float32), name="SCI")
    err = fits.ImageHDU(np.ones((4, 4), np.float32), name="ERR")
    table = apertures.curve_hdu([apertures.ApertureNoise(3.0, 10, 1.0, 1.0)])
    merged = product("merged_mask.fits", image)
    hst = {"bkgsub1": product("hst_bkgsub1.fits", image), "mbkgsub1": product("hst_mbkgsub1.fits", image)}
    old = {"bkgsub1": product("a_bkgsub1.fits", image), "mbkgsub1": product("a_mbkgsub1.fits", image, err)}
    new = {"bkgsub1": product("b_bkgsub1.fits", image),
           "mbkgsub1": product("b_mbkgsub1.fits", image, err, table)}
    assert mb.complete({"n": new, "h": hst}, merged, "mosaic_background", (3.0,))
    assert not mb.complete({"n": new, "o": old}, merged, "mosaic_background", (3.0,))
    assert mb.complete({"n": new, "o": old}, merged, "mosaic_background", ())
    assert not mb.complete({"n": new}, str(tmp_path / "missing.fits"), "mosaic_background", (3.0,))


def _mosaic_hdul(shape=(6, 6)):
    """An in-memory mosaic file with ERR and the three VAR_ arrays (ERR^2 their sum)."""
    from astropy.io import fits

    rng = np.random.default_rng(5)
    var = {name: rng.uniform(0.1, 1.0, shape).astype(np.float32) for name in mb.VARIANCES}
    err = np.sqrt(sum(var.values())).astype(np.float32)
    return fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros(shape, np.float32), name="SCI"),
                         fits.ImageHDU(err, name="ERR"),
                         *(fits.ImageHDU(v, name=n) for n, v in var.items())])


def test_rescaled_err_predicts_the_noise_at_its_radius_and_keeps_err_squared_the_sum():
    from ceers_nircam import apertures

    hdul = _mosaic_hdul()
    before = hdul["ERR"].data.copy()
    curve = [apertures.ApertureNoise(2.0, 100, 1.8, 2.0), apertures.ApertureNoise(6.0, 50, 7.5, 6.0)]
    new = mb.rescale_err(hdul, curve, 4.0)  # ratios 0.9 and 1.25: 1.075 at 4
    np.testing.assert_allclose(hdul["ERR"].data, before * 1.075, rtol=1e-6)
    total = sum(hdul[name].data.astype(np.float64) for name in mb.VARIANCES)
    np.testing.assert_allclose(hdul["ERR"].data.astype(np.float64) ** 2, total, rtol=1e-5)
    assert hdul["ERR"].header["ERRSCALE"] == pytest.approx(1.075)
    assert mb.err_radius_of(hdul) == 4.0
    assert apertures.ratio_at(new, 4.0) == pytest.approx(1.0)


def test_no_empty_apertures_leave_err_as_drizzled():
    from ceers_nircam import apertures

    hdul = _mosaic_hdul()
    before = hdul["ERR"].data.copy()
    mb.rescale_err(hdul, [apertures.ApertureNoise(3.0, 0, float("nan"), float("nan"))], 3.0)
    np.testing.assert_array_equal(hdul["ERR"].data, before)
    assert hdul["ERR"].header["ERRSCALE"] == 1.0


def test_a_product_rescaled_for_another_radius_is_not_complete(tmp_path):
    from astropy.io import fits

    from ceers_nircam import history

    header = fits.Header()
    header["HISTORY"] = history.describe("mosaic_background", {"band": "f150w"})
    paths = {}
    for suffix in ("bkgsub1", "mbkgsub1"):
        hdul = _mosaic_hdul()
        hdul[0].header.extend(header)
        if suffix == "mbkgsub1":
            hdul["ERR"].header["ERRRAD"] = 4.0
        paths[suffix] = str(tmp_path / f"a_{suffix}.fits")
        hdul.writeto(paths[suffix])
    merged = paths["bkgsub1"]
    assert mb.complete({"a": paths}, merged, "mosaic_background", (), 4.0)
    assert not mb.complete({"a": paths}, merged, "mosaic_background", (), 3.0)
    assert not mb.complete({"a": paths}, merged, "mosaic_background", ())


@pytest.mark.parametrize("radii,err_radius,message", [
    ((1.0, 12.0), -1.0, "--err_radius must be positive, or 0 for ERR as drizzled (got -1)"),
    ((), 4.0, "--err_radius needs --aperture_radii"),
    ((3.0, 6.0), 8.0, "--err_radius 8 lies outside --aperture_radii (3 to 6)"),
])
def test_err_radius_outside_the_curve_is_refused(radii, err_radius, message):
    params = mb.MosaicBackgroundParams(pointing="nircam1", aperture_radii=radii, err_radius=err_radius)
    with pytest.raises(CeersError, match=re.escape(message)):
        mb.check_inputs([], params)
