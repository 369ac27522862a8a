"""remstriping.py on a simulated full frame: recovered row and column patterns against the truth.

The striping amplitude is varied on the calibrated exposure: its true
pattern (truth STRIPE_ROWS, STRIPE_COLS) is replaced by k times itself, so
the injected striping covers 0.2 to 2 times the per-pixel background noise
with the rest of the image (sources, noise, flags) unchanged. Residual and
floor: :func:`ceers_nircam.qa.striping_residual` (per amplifier-row with at
least 20% unmasked, against 1.25 sigma / sqrt(N)).
"""

import os

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

from ceers_nircam import fitsio, history, qa, reffiles
from ceers_nircam.offline import artifacts, psf, validate
from ceers_nircam.offline import instrument as inst

from stage1_helpers import copy_rate, run_script

pytestmark = pytest.mark.pipeline


def background(model, truth):
    """Light-sensitive pixels of the sky: unflagged, outside every source's stamp."""
    return (model.dq == 0) & ~validate.source_footprint(model.data.shape, truth["sources"])


def true_patterns(rate_path, truth, ideal):
    """The striping the rate image carries (not the truth file's unweighted-fit patterns:
    see :func:`ceers_nircam.qa.carried_striping`) and the per-pixel background noise."""
    stripes = artifacts.striping_image(truth["stripe_rows"], truth["stripe_cols"])
    with datamodels.ImageModel(rate_path) as model:
        flat, _ = reffiles.flat_field(model)
        return qa.carried_striping(model.data, model.dq, flat, ideal - stripes, background(model, truth))


def sky_patterns(truth, masked):
    """The patterns of the noiseless sky (flat-fielded DN/s) over the pixels the step used."""
    return qa.sky_patterns(validate.true_sky(truth) / truth["header"]["PHOTMJSR"], masked)


def with_striping(rate_path, truth, factor, directory):
    """Copy of the rate with the simulator's striping multiplied by ``factor``; returns the path
    and the patterns added."""
    rows, cols = truth["stripe_rows"], truth["stripe_cols"]
    pattern = artifacts.striping_image(rows, cols)
    path = os.path.join(directory, os.path.basename(rate_path))
    os.makedirs(directory, exist_ok=True)
    with datamodels.ImageModel(rate_path) as model:
        keep = model.data != 0
        model.data = np.where(keep, model.data + (factor - 1.0) * pattern, 0).astype(np.float32)
        fitsio.save_model(model, path)
    return path, (factor - 1.0) * rows, (factor - 1.0) * cols


def clean_flicker_noise(rate_path, out_path):
    """jwst's clean_flicker_noise, per amplifier, on a rate file; returns the output path."""
    from jwst.clean_flicker_noise import CleanFlickerNoiseStep

    result = CleanFlickerNoiseStep.call(rate_path, skip=False, fit_by_channel=True,
                                        configure_log=False)
    fitsio.save_model(result, out_path)
    return out_path


@pytest.fixture(scope="module")
def patterns(nrca1):
    sim = nrca1["sim"]
    return true_patterns(nrca1["rate"], sim.truth, sim.ideal)


@pytest.mark.parametrize("ratio", [0.2, 1.0, 2.0])
def test_residual_striping_is_near_the_median_noise_floor(nrca1, patterns, ratio, tmp_path):
    sim = nrca1["sim"]
    truth = sim.truth
    rows0, cols0, noise = patterns
    actual = np.std(np.repeat(rows0.T, 512, axis=1)[inst.science_region()])
    path, rows_added, cols_added = with_striping(nrca1["rate"], truth, ratio * noise / actual,
                                                 tmp_path / "ours")
    assert run_script("remstriping", path, "--save_patterns") == 0
    stem = path[: -len(".fits")]
    masked = fits.getdata(stem + "_1fmask.fits", "MASK") != 0
    sky_rows, sky_cols = sky_patterns(truth, masked)
    true_rows, true_cols = rows0 + rows_added + sky_rows, cols0 + cols_added + sky_cols
    rows = fits.getdata(stem + "_horiz.fits", "ROWS")
    cols = fits.getdata(stem + "_vert.fits", "COLS")
    ours = qa.striping_residual(rows, cols, masked, true_rows, true_cols, noise)
    as_recorded = qa.striping_residual(rows, cols, masked, truth["stripe_rows"] + rows_added + sky_rows,
                                       truth["stripe_cols"] + cols_added + sky_cols, noise)

    # jwst's clean_flicker_noise (per amplifier) on the same image, judged the same way.
    cfn = clean_flicker_noise(stem + "_pre1f.fits", str(tmp_path / "cfn_rate.fits"))
    with datamodels.ImageModel(stem + "_pre1f.fits") as before, datamodels.ImageModel(cfn) as after:
        flat, _ = reffiles.flat_field(before)
        taken = qa.removed_patterns(before.data, after.data, flat)
    theirs = qa.striping_residual(*taken, masked, true_rows, true_cols, noise)
    theirs_recorded = qa.striping_residual(*taken, masked, truth["stripe_rows"] + rows_added + sky_rows,
                                           truth["stripe_cols"] + cols_added + sky_cols, noise)
    print(f"\nstriping {ratio} x noise ({noise:.5f} DN/s): residual / floor against the truth file "
          f"rows {as_recorded.rows_ratio:.3f} (clean_flicker_noise {theirs_recorded.rows_ratio:.3f}), "
          f"columns {as_recorded.cols_ratio:.3f} (clean_flicker_noise {theirs_recorded.cols_ratio:.3f}); "
          f"against the striping measured on the rate rows {ours.rows_ratio:.3f} "
          f"(clean_flicker_noise {theirs.rows_ratio:.3f}), columns {ours.cols_ratio:.3f}")
    assert as_recorded.rows_ratio <= 1.5
    assert as_recorded.cols_ratio <= 1.5
    assert as_recorded.rows <= theirs_recorded.rows
    assert as_recorded.total <= theirs_recorded.total


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
        epsf = psf.effective_psf("F150W")
        stars = validate.isolated_sources(src, before.data.shape, validate.aperture_radii(epsf)[1][0],
                                          kinds=("star",), mag_range=(19.5, 23.5))
        flux0 = validate.source_photometry(ideal, before.dq, src, 1.0, stars, epsf)
        flux1 = validate.source_photometry(after.data, after.dq, src, 1.0, stars, epsf)
        flux_in = validate.source_photometry(before.data, before.dq, src, 1.0, stars, epsf)
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
