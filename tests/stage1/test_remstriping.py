"""remstriping.py on a simulated full frame: recovered row and column patterns against the truth.

The striping amplitude is varied on the calibrated exposure: its true
pattern (truth STRIPE_ROWS, STRIPE_COLS) is replaced by k times itself, so
the injected striping covers 0.2 to 2 times the per-pixel background noise
with the rest of the image (sources, noise, flags) unchanged.

Metric: per amplifier-row with at least 20% of its pixels unmasked, the
recovered row value minus the true one, and per column the same; a
constant per amplifier is not striping (it moves freely between the row and
the column pattern, and the pedestal), so it is removed from both. The
floor is what a median of the N unmasked pixels of that row (or column)
could do: 1.25 sigma / sqrt(N).
"""

import os

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

from ceers_nircam import fitsio, history, reffiles
from ceers_nircam.offline import artifacts, validate
from ceers_nircam.offline import instrument as inst

from stage1_helpers import copy_rate, run_script

pytestmark = pytest.mark.pipeline


def background_noise(rate_path, truth, ideal):
    """Per-pixel noise (flat-fielded DN/s) of the background: rate minus noiseless truth."""
    with datamodels.ImageModel(rate_path) as model:
        flat, _ = reffiles.flat_field(model)
        use = (model.dq == 0) & ~validate.source_footprint(model.data.shape, truth["sources"])
        resid = ((model.data - ideal) / flat)[use & np.isfinite(flat)]
    return float(1.4826 * np.median(np.abs(resid - np.median(resid))))


def with_striping(rate_path, truth, factor, directory):
    """Copy of the rate with the true striping multiplied by ``factor``; returns (path, rows, cols)."""
    rows, cols = truth["stripe_rows"], truth["stripe_cols"]
    pattern = artifacts.striping_image(rows, cols)
    path = os.path.join(directory, os.path.basename(rate_path))
    os.makedirs(directory, exist_ok=True)
    with datamodels.ImageModel(rate_path) as model:
        keep = model.data != 0
        model.data = np.where(keep, model.data + (factor - 1.0) * pattern, 0).astype(np.float32)
        fitsio.save_model(model, path)
    return path, factor * rows, factor * cols


def residuals(rows, cols, masked, true_rows, true_cols, sigma):
    """Row and column residuals over the rows and columns with >= 20% unmasked, and their floors."""
    ny, nx = masked.shape
    namps = true_rows.shape[0]
    n_row = (~masked).reshape(ny, namps, nx // namps).sum(axis=2).T
    n_col = (~masked).sum(axis=0)
    use_r = n_row >= 0.2 * (nx // namps)
    use_c = n_col >= 0.2 * ny
    r = np.where(use_r, rows - true_rows, np.nan)
    r -= np.nanmedian(r, axis=1)[:, None]
    c = np.where(use_c, cols - true_cols, np.nan).reshape(namps, -1)
    c = (c - np.nanmedian(c, axis=1)[:, None]).ravel()
    floor_r = 1.25 * sigma / np.sqrt(n_row[use_r])
    floor_c = 1.25 * sigma / np.sqrt(n_col[use_c])
    rms = lambda a: float(np.sqrt(np.nanmean(np.square(a))))  # noqa: E731
    return rms(r[use_r]), rms(floor_r), rms(c[use_c]), rms(floor_c)


def removed_patterns(before_path, after_path, namps=inst.NAMPS):
    """Row (per amplifier) and column patterns a correction took out (median along each)."""
    with datamodels.ImageModel(before_path) as b, datamodels.ImageModel(after_path) as a:
        flat, _ = reffiles.flat_field(b)
        diff = np.where((b.data != 0) & (a.data != 0), (b.data - a.data) / flat, np.nan)
    ny, nx = diff.shape
    rows = np.nanmedian(diff.reshape(ny, namps, nx // namps), axis=2).T
    horiz = np.repeat(rows.T, nx // namps, axis=1)
    cols = np.nanmedian(diff - horiz, axis=0)
    return rows, cols


def clean_flicker_noise(rate_path, out_path):
    from jwst.clean_flicker_noise import CleanFlickerNoiseStep

    result = CleanFlickerNoiseStep.call(rate_path, skip=False, fit_by_channel=True,
                                        configure_log=False)
    fitsio.save_model(result, out_path)
    return out_path


@pytest.fixture(scope="module")
def noise(nrca1):
    sim = nrca1["sim"]
    return background_noise(nrca1["rate"], sim.truth, sim.ideal)


@pytest.mark.parametrize("ratio", [0.2, 1.0, 2.0])
def test_residual_striping_is_near_the_median_noise_floor(nrca1, noise, ratio, tmp_path):
    sim = nrca1["sim"]
    truth = sim.truth
    rms_true = np.std(artifacts.striping_image(truth["stripe_rows"], truth["stripe_cols"])[inst.science_region()])
    factor = ratio * noise / rms_true
    path, rows_true, cols_true = with_striping(nrca1["rate"], truth, factor, tmp_path / "ours")
    assert run_script("remstriping", path, "--save_patterns") == 0
    stem = path[: -len(".fits")]
    masked = fits.getdata(stem + "_1fmask.fits", "MASK") != 0
    rows = fits.getdata(stem + "_horiz.fits", "ROWS")
    cols = fits.getdata(stem + "_vert.fits", "COLS")
    ours = residuals(rows, cols, masked, rows_true, cols_true, noise)

    # jwst's clean_flicker_noise (per amplifier) on the same image, judged the same way.
    cfn = clean_flicker_noise(stem + "_pre1f.fits", str(tmp_path / "cfn_rate.fits"))
    theirs = residuals(*removed_patterns(stem + "_pre1f.fits", cfn), masked, rows_true, cols_true, noise)
    print(f"\nstriping {ratio} x noise ({noise:.5f} DN/s): residual / floor rows "
          f"{ours[0] / ours[1]:.3f} (clean_flicker_noise {theirs[0] / theirs[1]:.3f}), columns "
          f"{ours[2] / ours[3]:.3f} (clean_flicker_noise {theirs[2] / theirs[3]:.3f})")
    assert ours[0] <= 1.5 * ours[1]
    assert ours[2] <= 1.5 * ours[3]
    assert ours[0] <= theirs[0]
    assert ours[0] ** 2 + ours[2] ** 2 <= theirs[0] ** 2 + theirs[2] ** 2


def test_isolated_star_fluxes_do_not_change(nrca1, tmp_path):
    # Removing the striping moves a star's measured flux by what the stripes added under it
    # against its sky annulus; what matters is that the correction takes no starlight: its
    # fluxes agree with those of the image with the true striping removed.
    sim = nrca1["sim"]
    truth = sim.truth
    src = truth["sources"]
    path = copy_rate(nrca1["rate"], tmp_path)
    assert run_script("remstriping", path) == 0
    true_pattern = artifacts.striping_image(truth["stripe_rows"], truth["stripe_cols"])
    with datamodels.ImageModel(path.replace("_rate.fits", "_rate_pre1f.fits")) as before, \
            datamodels.ImageModel(path) as after:
        ideal = np.where(before.data != 0, before.data - true_pattern, 0)
        stars = validate.isolated_stars(src, before.data.shape)
        flux0 = validate.star_photometry(ideal, before.dq, src, 1.0, stars)
        flux1 = validate.star_photometry(after.data, after.dq, src, 1.0, stars)
        flux_in = validate.star_photometry(before.data, before.dq, src, 1.0, stars)
    change = np.asarray(flux1["flux_measured"]) / np.asarray(flux0["flux_measured"]) - 1
    striped = np.asarray(flux_in["flux_measured"]) / np.asarray(flux0["flux_measured"]) - 1
    print(f"\n{len(change)} isolated stars: largest flux difference from the truly destriped "
          f"image {np.max(np.abs(change)):.5f} (with the striping left in: {np.max(np.abs(striped)):.5f})")
    assert len(change) >= 10
    assert np.max(np.abs(change)) < 0.005


@pytest.mark.parametrize("thresh", ["0.8", "0.3"])
def test_full_row_fallback_engages_exactly_above_the_threshold(nrca1, thresh, tmp_path):
    path = copy_rate(nrca1["rate"], tmp_path)
    assert run_script("remstriping", path, "--thresh", thresh, "--save_patterns") == 0
    stem = path[: -len(".fits")]
    with datamodels.ImageModel(stem + "_pre1f.fits") as model:
        flat, _ = reffiles.flat_field(model)
        masked = (model.dq != 0) | ~np.isfinite(model.data) | ~np.isfinite(flat)
    masked |= fits.getdata(stem + "_1fmask.fits", "MASK") != 0
    ny, nx = masked.shape
    fraction = masked.reshape(ny, 4, nx // 4).mean(axis=2).T
    with fits.open(stem + "_horiz.fits") as h:
        fallback = h["FALLBACK"].data.astype(bool)
        rows, amp_rows, full_rows = h["ROWS"].data, h["AMPROWS"].data, h["FULLROWS"].data
    expected = (fraction > float(thresh)) | ~np.isfinite(amp_rows)
    np.testing.assert_array_equal(fallback, expected)
    full = np.broadcast_to(full_rows, rows.shape)
    np.testing.assert_array_equal(rows[fallback], full[fallback])
    np.testing.assert_array_equal(rows[~fallback], amp_rows[~fallback])
    science = fraction[:, 4:-4] < 1
    assert fallback[:, 4:-4][science].any() and not fallback[:, 4:-4][science].all()


def test_mask_is_reused_and_empty_rows_are_flagged(nrca1, tmp_path):
    first = copy_rate(nrca1["rate"], tmp_path / "first")
    assert run_script("remstriping", first) == 0
    mask = first.replace("_rate.fits", "_rate_1fmask.fits")
    second = copy_rate(nrca1["rate"], tmp_path / "second")
    copy_rate(mask, tmp_path / "second")
    # A mask covering rows 1000-1009 entirely: those rows must end as 0 with DO_NOT_USE.
    with fits.open(os.path.join(tmp_path / "second", os.path.basename(mask)), mode="update") as h:
        h["MASK"].data[1000:1010] = 2
    assert run_script("remstriping", second) == 0
    with datamodels.ImageModel(second) as model:
        assert np.all(model.data[1000:1010] == 0)
        assert np.all(model.dq[1000:1010] & datamodels.dqflags.pixel["DO_NOT_USE"])
        assert np.any(model.data[990:1000] != 0)
        entry = history.entries(model, "remstriping")[0]
    assert "flat=jwst_nircam_flat_f150w_synth.fits" in entry and "thresh=0.8" in entry
