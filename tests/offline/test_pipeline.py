"""The real calwebb_detector1 and calwebb_image2 on simulated full-frame exposures.

No override_ parameters and no network: references come from the synthetic
CRDS context exactly as they would from CRDS. Calibration must invert the
simulation: recovered fluxes, sky, noise and WCS match the injected truth.
"""

import numpy as np
import pytest
from astropy.stats import sigma_clipped_stats
from astropy.table import Table, vstack
from stdatamodels.jwst import datamodels

from ceers_nircam.nircam import FILTERS
from ceers_nircam.offline import artifacts, psf, scene, validate
from ceers_nircam.offline import instrument as inst
from ceers_nircam.offline.simulate import (SimulationConfig, exposure_wcs, load_catalog,
                                           plan_exposures, read_truth, simulate_exposure)

pytestmark = pytest.mark.pipeline


def _star_grid(config, exp, distortion, n=7, mags=(20.5, 22.5), size=inst.NPIX, edge=150):
    """A grid of point sources on the detector (or its corner subarray), to measure photometry on."""
    wcs = exposure_wcs(config, exp, distortion)
    pos = np.linspace(edge, size - edge, n)
    x, y = np.meshgrid(pos + 0.37, pos - 0.21)
    ra, dec = wcs(x.ravel(), y.ravel())
    grid = Table({"id": np.arange(900001, 900001 + n * n), "ra": ra, "dec": dec,
                  "mag": np.linspace(*mags, n * n), "kind": ["star"] * (n * n),
                  "r_eff": np.zeros(n * n), "sersic_n": np.zeros(n * n),
                  "axis_ratio": np.ones(n * n), "theta": np.zeros(n * n)})
    for filt in FILTERS:
        grid[f"mag_{filt.lower()}"] = grid["mag"]
    return grid


def _run_pipeline(uncal, outdir):
    from jwst.pipeline import Detector1Pipeline, Image2Pipeline

    Detector1Pipeline.call(uncal, output_dir=str(outdir), save_results=True)
    rate = str(outdir / uncal.split("/")[-1].replace("_uncal", "_rate"))
    Image2Pipeline.call(rate, output_dir=str(outdir), save_results=True)
    return rate, rate.replace("_rate", "_cal")


@pytest.fixture(scope="module")
def calibrated(offline_env, tmp_path_factory):
    """A CEERS-like full-frame NRCA1 F150W exposure (9 groups, realistic defaults) with a
    grid of stars to measure, through Detector1 and Image2."""
    from ceers_nircam.offline.simulate import best_references

    out = tmp_path_factory.mktemp("pipeline")
    config = SimulationConfig(detectors=("NRCA1",), filters=("F150W",), ndithers=1)
    exp = plan_exposures(config)[0]
    refs = best_references(exp)
    catalog = vstack([load_catalog(config), _star_grid(config, exp, refs["distortion"])])
    uncal, truth, ideal = simulate_exposure(config, exp, catalog, str(out), str(out / "wisps"),
                                            keep_ideal=True)
    rate, cal = _run_pipeline(uncal, out)
    return dict(uncal=uncal, truth=read_truth(truth), ideal=ideal, rate=rate, cal=cal)


def test_both_pipelines_ran_on_the_synthetic_context(calibrated):
    with datamodels.ImageModel(calibrated["cal"]) as cal:
        assert cal.meta.ref_file.crds.context_used == "jwst_9000.pmap"
        for step in ("dq_init", "saturation", "superbias", "refpix", "linearity", "dark_sub",
                     "jump", "ramp_fit", "assign_wcs", "flat_field", "photom"):
            assert getattr(cal.meta.cal_step, step) == "COMPLETE", step
        assert cal.meta.ref_file.flat.name.endswith("jwst_nircam_flat_f150w_synth.fits")
        assert cal.meta.ref_file.dark.name.endswith("jwst_nircam_dark_synth.fits")
        assert cal.meta.ref_file.distortion.name.endswith("jwst_nircam_distortion_nrca1_synth.asdf")
        assert cal.meta.bunit_data == "MJy/sr"


def test_point_source_fluxes_match_truth_within_one_percent(calibrated):
    truth = calibrated["truth"]
    epsf = psf.effective_psf("F150W")
    with datamodels.ImageModel(calibrated["cal"]) as cal:
        idx = validate.isolated_sources(truth["sources"], cal.data.shape,
                                        validate.aperture_radii(epsf)[1][0], kinds=("star",))
        phot = validate.source_photometry(cal.data, cal.dq, truth["sources"],
                                          cal.meta.photometry.pixelarea_steradians, idx, epsf)
    assert len(phot) >= 15
    assert np.median(phot["ratio"]) == pytest.approx(1.0, abs=0.01)


def test_galaxy_fluxes_match_truth_within_two_percent(calibrated):
    truth = calibrated["truth"]
    epsf = psf.effective_psf("F150W")
    with datamodels.ImageModel(calibrated["cal"]) as cal:
        idx = validate.isolated_sources(truth["sources"], cal.data.shape,
                                        validate.aperture_radii(epsf)[1][0], kinds=("galaxy",))
        phot = validate.source_photometry(cal.data, cal.dq, truth["sources"],
                                          cal.meta.photometry.pixelarea_steradians, idx, epsf)
    assert len(phot) >= 20
    assert np.median(phot["ratio"]) == pytest.approx(1.0, abs=0.02)


def test_sky_is_recovered_within_one_percent(calibrated):
    truth = calibrated["truth"]
    model = validate.true_sky(truth)
    assert np.mean(model) == pytest.approx(truth["header"]["SKYMJYSR"], rel=1e-9)
    with datamodels.ImageModel(calibrated["cal"]) as cal:
        sky = validate.measure_sky(cal.data, cal.dq, truth["sources"], model=model)
    assert sky == pytest.approx(truth["header"]["SKYMJYSR"], rel=0.01)


def test_assign_wcs_puts_truth_at_the_simulated_pixels_but_for_the_pointing_error(calibrated):
    truth = calibrated["truth"]
    h = truth["header"]
    src = validate.on_detector(truth["sources"])
    assert np.hypot(h["PTGERRA"], h["PTGERRD"]) > 0.005  # a pointing error is on by default
    with datamodels.ImageModel(calibrated["cal"]) as cal:
        dra, ddec = validate.wcs_offsets(cal.meta.wcs, src)
        dx, dy = validate.pixel_offsets(cal.meta.wcs, validate.shift_sky(src, h["PTGERRA"], h["PTGERRD"]))
    assert len(src) > 500
    # The header is off by exactly the recorded error, and by nothing else.
    np.testing.assert_allclose(dra, h["PTGERRA"], atol=1e-3)
    np.testing.assert_allclose(ddec, h["PTGERRD"], atol=1e-3)
    assert np.max(np.hypot(dx, dy)) < 0.05


def test_jump_step_sees_snowball_cores_and_halos_but_not_their_wings(calibrated):
    # The faint wing beyond the halo radius is what CEERS's snowball expansion is for.
    truth = calibrated["truth"]
    snow = truth["snowballs"]
    assert len(snow) >= 20  # one per 20 s over 966 s
    shape = (inst.NPIX, inst.NPIX)
    core, halo, wing = (np.zeros(shape, bool) for _ in range(3))
    yy, xx = np.mgrid[0:inst.NPIX, 0:inst.NPIX]
    for ev in snow:
        r = artifacts.snowball_radius(ev, yy, xx)
        core |= r <= ev["core_radius"] - 1
        halo |= (r > ev["core_radius"] + 1) & (r < 0.8 * ev["halo_radius"])
        wing |= (r > ev["halo_radius"] + 3) & (r < ev["outer_radius"])
    light = ~inst.reference_pixel_mask()
    # Another snowball's halo or core may overlap a wing: count the wing where it is wing only.
    wing &= ~artifacts.snowball_footprint(snow, shape, "halo") & light
    core &= light
    halo &= light & ~core
    with datamodels.ImageModel(calibrated["rate"]) as rate:
        saturated = (rate.dq & datamodels.dqflags.pixel["SATURATED"]) > 0
        jump = (rate.dq & datamodels.dqflags.pixel["JUMP_DET"]) > 0
    # A snowball arriving late in the last group has too little of its charge read to saturate.
    assert saturated[core].mean() > 0.9
    assert jump[halo].mean() > 0.9
    assert jump[wing].mean() < 0.3


def test_rate_noise_is_the_pipeline_error_plus_the_1f_excess(calibrated):
    # Away from sources and flagged pixels, rate minus the noiseless truth (sky, sources
    # and the striping's row and column patterns) is Poisson and read noise, plus the
    # within-row part of the 1/f noise, which the pipeline's ERR does not know of.
    truth = calibrated["truth"]
    with datamodels.ImageModel(calibrated["rate"]) as rate:
        use = (rate.dq == 0) & ~validate.source_footprint(rate.data.shape, truth["sources"])
        use &= ~artifacts.snowball_footprint(truth["snowballs"], rate.data.shape, "outer")
        resid, err = (rate.data - calibrated["ideal"])[use], rate.err[use]
    assert use.sum() > 1_000_000
    assert 1.02 < validate.noise_ratio(resid, err) < 1.3
    # The jump step judges group differences by the white read noise alone, so the 1/f
    # noise trips it on upward fluctuations more than on downward ones (it flags jumps,
    # not drops): slopes come out slightly low, by a few hundredths of their error.
    assert np.median(resid / err) == pytest.approx(0.0, abs=0.03)


def test_striping_is_a_third_or_more_of_the_background_noise(calibrated):
    # CEERS-like 9-group F150W: the 1/f row pattern is plainly visible over the noise.
    truth = calibrated["truth"]
    pattern = artifacts.striping_image(truth["stripe_rows"], truth["stripe_cols"])
    with datamodels.ImageModel(calibrated["rate"]) as rate:
        use = (rate.dq == 0) & ~validate.source_footprint(rate.data.shape, truth["sources"])
        use &= ~artifacts.snowball_footprint(truth["snowballs"], rate.data.shape, "outer")
        # Everything but the scene and sky: all the noise, striping included.
        background = rate.data - (calibrated["ideal"] - pattern)
        noise = sigma_clipped_stats(background[use], sigma=4.0)[2]
    stripes = np.std(pattern[inst.science_region()])
    print(f"striping rms {stripes:.5f} DN/s, background noise {noise:.5f} DN/s")
    assert 0.3 <= stripes / noise <= 1.0


def _quiet_exposure(tmp_path, detector, filt, ngroups, **kw):
    """An exposure with nothing but what ``kw`` turns on (and an empty sky)."""
    quiet = dict(sky=False, sources=False, noise=False, wisps=False, snowballs=0, cosmic_rays=0,
                 bad_pixels=False, bias_drifts=False, striping=False)
    config = SimulationConfig(detectors=(detector,), filters=(filt,), ndithers=1, ngroups=ngroups,
                              **{**quiet, **kw})
    exp = plan_exposures(config)[0]
    empty = Table(names=("ra", "dec", "mag", "id", "kind", "r_eff", "sersic_n", "axis_ratio", "theta"),
                  dtype=(float,) * 3 + (int, str) + (float,) * 4)
    return simulate_exposure(config, exp, empty, str(tmp_path), str(tmp_path / "wisps"))


@pytest.mark.parametrize("detector, filt", [("NRCB1", "F200W"), ("NRCBLONG", "F356W")])
def test_dark_noise_is_1_5_to_2_times_the_read_noise_prediction(offline_env, tmp_path, detector, filt):
    # Flight darks: the measured noise of a ~1000 s exposure is about 1.9 times what
    # white read noise predicts (JDox); the 1/f noise supplies the excess.
    from jwst.pipeline import Detector1Pipeline

    uncal, _ = _quiet_exposure(tmp_path, detector, filt, 9, noise=True, striping=True,
                               bias_drifts=True)
    rate = Detector1Pipeline.call(uncal)
    sci = inst.science_region()
    good = rate.dq[sci] == 0
    ratio = np.std(rate.data[sci][good]) / np.sqrt(np.mean(rate.var_rnoise[sci][good]))
    print(f"{detector}: dark noise / VAR_RNOISE prediction = {ratio:.3f}")
    assert 1.5 <= ratio <= 2.0


def test_striping_truth_is_the_pipeline_rate(offline_env, tmp_path):
    from jwst.pipeline import Detector1Pipeline

    uncal, truth_path = _quiet_exposure(tmp_path, "NRCB1", "F200W", 9, striping=True)
    # Without read noise the 1/f noise alone would trip the jump step, whose
    # flags change which groups a pixel's slope uses; the truth is the plain fit.
    rate = Detector1Pipeline.call(uncal, steps={"jump": {"skip": True}})
    truth = read_truth(truth_path)
    sci = inst.science_region()
    for amp, cs in enumerate(inst.amp_slices()):
        cols = np.zeros(inst.NPIX, dtype=bool)
        cols[cs] = True
        cols[:inst.NREF] = cols[-inst.NREF:] = False
        measured = np.nanmean(np.where(rate.dq[sci[0]][:, cols] == 0, rate.data[sci[0]][:, cols], np.nan),
                              axis=1)
        # 16-bit rounding of the ramps leaves ~2e-5 DN/s on a mean of ~500 pixels.
        np.testing.assert_allclose(measured, truth["stripe_rows"][amp][sci[0]], atol=1e-4)
    assert np.std(truth["stripe_rows"][:, sci[0]]) > 2e-3


def test_subarray_exposure_calibrates_like_full_frame(offline_env, tmp_path):
    from ceers_nircam.offline.simulate import best_references

    # Striping off: over 320 columns its mean is not zero and would bias the sky.
    config = SimulationConfig(detectors=("NRCB1",), filters=("F200W",), ndithers=1, ngroups=10,
                              subarray="SUB320", snowballs=1, striping=False)
    exp = plan_exposures(config)[0]
    refs = best_references(exp, config.subarray)
    assert refs["dark"].endswith("jwst_nircam_dark_sub320_synth.fits")
    catalog = vstack([scene.generate_catalog(config.ra, config.dec, density=50, seed=8),
                      _star_grid(config, exp, refs["distortion"], n=4, mags=(22.5, 23.0), size=320,
                                 edge=45)])
    uncal, truth_path, ideal = simulate_exposure(config, exp, catalog, str(tmp_path),
                                                 str(tmp_path / "wisps"), keep_ideal=True)
    rate, cal = _run_pipeline(uncal, tmp_path)
    truth = read_truth(truth_path)
    assert truth["header"]["SUBARRAY"] == "SUB320"
    row = validate.check_cal(cal, truth)
    # A 320-pixel subarray has 4 x 320 reference pixels per group; their noise,
    # through reference-pixel correction, is ~0.6% of the sky of a 107 s exposure.
    # (The stars are faint enough that their PSF halos, ~7% of their light beyond
    # 0.8 arcsec, add well under 1% to the sky of so small an image.)
    assert row["sky_ratio"] == pytest.approx(1.0, abs=0.03)
    assert row["nsources"] >= 8 and row["flux_ratio"] == pytest.approx(1.0, abs=0.01)
    assert row["wcs_offset_pix"] < 0.05
    with datamodels.ImageModel(cal) as model:
        assert model.data.shape == (320, 320)
        assert model.meta.subarray.name == "SUB320"
    with datamodels.ImageModel(rate) as model:
        use = (model.dq == 0) & ~validate.source_footprint(model.data.shape, truth["sources"])
        ratio = validate.noise_ratio((model.data - ideal)[use], model.err[use])
        assert ratio == pytest.approx(1.0, abs=0.05)
