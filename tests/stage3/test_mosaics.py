"""stage3/make_mosaic.py on the simulated pointing (``mosaics``), judged against the truth.

The test grid is the window of the DR0.5 frame that covers the F150W images (derived with
--cover); both filters are drizzled onto it. The images were aligned by the astrometry step
(the simulated visit has a 0.43 arcsec pointing error, and 3 mas per exposure).
"""

import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

import stage3_data as data
from ceers_nircam import history, survey
from ceers_nircam.offline import validate
from ceers_nircam.background import background2d
from ceers_nircam.steps import mosaic

pytestmark = pytest.mark.pipeline

FILTERS = ("f150w", "f277w")


def _wcs(path):
    return WCS(fits.getheader(path, "SCI"))


def test_every_filter_on_one_grid_aligned_with_the_dr05_frame(mosaics):
    grids = {f: mosaic.grid_of_header(fits.getheader(mosaics.i2d[f], "SCI")) for f in FILTERS}
    saved = mosaic.Grid.read(mosaics.grid)
    for filt, grid in grids.items():
        assert mosaic.same_grid(grid, saved), filt
        assert fits.getheader(mosaics.i2d[filt])["MOSGRID"] == saved.name
        assert history.already_done(mosaics.i2d[filt], "make_mosaic")
    a, b = (fits.getheader(mosaics.i2d[f], "SCI") for f in FILTERS)
    for key in ("NAXIS1", "NAXIS2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "PC1_1", "PC1_2",
                "PC2_1", "PC2_2", "CDELT1", "CDELT2"):
        assert a[key] == b[key], key
    # A window of the DR0.5 frame: nircam1's grid shifted by whole pixels.
    dx, dy = saved.offset_in(mosaic.Grid.dr05("nircam1"))
    x, y = np.array([0.0, 100.0, 3000.0]), np.array([0.0, 2000.0, 50.0])
    ra, dec = _wcs(mosaics.i2d["f150w"]).all_pix2world(x, y, 0)
    x1, y1 = survey.grid_wcs("nircam1").all_world2pix(ra, dec, 0)
    np.testing.assert_allclose(x1, x + dx, atol=1e-6)
    np.testing.assert_allclose(y1, y + dy, atol=1e-6)


@pytest.mark.parametrize("filt", FILTERS)
def test_truth_positions_within_5_mas(mosaics, matched, filt):
    catalog = Table.read(os.path.join(matched.rate_dir, "truth_catalog.ecsv"))
    with fits.open(mosaics.i2d[filt]) as hdul:
        image = hdul["SCI"].data.astype(np.float32)
        wcs = WCS(hdul["SCI"].header)
    scene = fits.getdata(mosaics.scene[filt], "SCI")
    bkg, _ = background2d(image, ~np.isfinite(image) | (scene > 1e-3), box=64, filter_size=3)
    image = image - bkg
    chosen, x, y = validate.isolated_in_mosaic(catalog, filt, wcs, image.shape)
    sigma = {"f150w": 1.0, "f277w": 1.6}[filt]
    offsets, own = [], []
    for i in chosen:
        cx, cy = validate.windowed_centroid(image, x[i], y[i], sigma)
        sx, sy = validate.windowed_centroid(scene, x[i], y[i], sigma)
        if np.isfinite(cx) and np.isfinite(sx):
            offsets.append((cx - x[i], cy - y[i]))
            own.append((sx - x[i], sy - y[i]))
    offsets, own = np.array(offsets) * 30.0, np.array(own) * 30.0  # mas (0.03" pixels)
    median = np.median(offsets, axis=0)
    print(f"\n{filt}: {len(offsets)} isolated sources; median offset of the measured positions "
          f"({median[0]:+.2f}, {median[1]:+.2f}) mas, robust scatter "
          f"{1.4826 * np.median(np.abs(offsets - median)):.1f} mas; the noiseless scene drizzled "
          f"alike: ({np.median(own[:, 0]):+.2f}, {np.median(own[:, 1]):+.2f}) mas")
    assert len(offsets) >= 20
    assert np.hypot(*median) < 5.0


@pytest.mark.parametrize("filt", FILTERS)
def test_err_has_no_holes_at_injected_bad_pixels(mosaics, matched, filt):
    # A hole (a zero variance given weight, DR0.5's VAR_FLAT fault) would drop ERR towards
    # zero. Without one, ERR at a bad pixel is its neighbours', higher by up to
    # sqrt(N / (N - 1)) where the bad pixel takes one of N exposures away (long-wave pixels
    # cover whole mosaic pixels: median 1.22 with three dithers), and scattered by the
    # neighbours' own source and jump-flag noise.
    with fits.open(mosaics.i2d[filt]) as hdul:
        err, sci = hdul["ERR"].data, hdul["SCI"].data
        wcs = WCS(hdul["SCI"].header)
    exposures = []
    for root in matched.roots:
        truth = data.load_truth(matched.rate_dir, root)
        if truth["header"]["FILTER"].lower() == filt:
            exposures.append((matched.path(root, "a3001_match"), truth["badpix"]))
    ratios, nodata = validate.err_at_bad_pixels(err, sci, wcs, exposures)
    print(f"\n{filt}: ERR at {ratios.size} bad pixels over their neighbours: median "
          f"{np.median(ratios):.3f}, 1-99%: {np.percentile(ratios, 1):.3f}-"
          f"{np.percentile(ratios, 99):.3f}, min {ratios.min():.3f}, max {ratios.max():.3f}; "
          f"{nodata} where no exposure has data")
    assert ratios.size > 100
    assert ratios.min() > 0.5
    assert np.percentile(ratios, 1) > 0.8


def test_dr05_grid_mosaic_equals_the_window(mosaics, matched, tmp_path):
    """F277W on the real nircam1 grid (10600 x 4800): the DR0.5 WCS, and the pixels of the
    test window where it lies in it."""
    out = str(tmp_path / "dr05")
    result = data.run_script("stage3/make_mosaic.py", os.path.join(matched.dir, "nircam1_f277w_final.json"),
                             "--output_dir", out)
    assert "grid nircam1 (10600 x 4800 pixels)" in result.stderr
    path = os.path.join(out, "ceers_nircam1_f277w_i2d.fits")
    header = fits.getheader(path, "SCI")
    grid = mosaic.grid_of_header(header)
    assert mosaic.same_grid(grid, mosaic.Grid.dr05("nircam1"))
    dx, dy = mosaic.Grid.read(mosaics.grid).offset_in(grid)
    window = fits.getdata(mosaics.i2d["f277w"], "SCI")
    ny, nx = window.shape
    full = fits.getdata(path, "SCI")[dy:dy + ny, dx:dx + nx]
    # The window's outermost pixels also receive what falls just beyond it on the big grid:
    # up to a long-wave pixel (0.063 arcsec, three mosaic pixels) away.
    both = np.isfinite(full) & np.isfinite(window)
    both[:3], both[-3:], both[:, :3], both[:, -3:] = False, False, False, False
    assert both.mean() > 0.5
    np.testing.assert_allclose(full[both], window[both], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("args,message", [
    (("--grid", "nircam7"), "unknown mosaic grid 'nircam7'"),
    (("--grid", "missing_grid.json"), "no such grid file"),
])
def test_bad_grid_is_a_one_line_error(matched, tmp_path, args, message):
    result = data.run_script("stage3/make_mosaic.py", os.path.join(matched.dir, "nircam1_f150w_final.json"),
                             *args, "--output_dir", str(tmp_path), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("ERROR: ") and message in result.stderr
    assert os.listdir(tmp_path) == []
