"""The real calwebb_detector1 and calwebb_image2 on simulated full-frame exposures.

No override_ parameters and no network: references come from the synthetic
CRDS context exactly as they would from CRDS. Calibration must invert the
simulation: recovered fluxes, sky, noise and WCS match the injected truth.
"""

import numpy as np
import pytest
from astropy.table import Table, vstack
from stdatamodels.jwst import datamodels

from ceers_nircam.offline import artifacts, scene, validate
from ceers_nircam.offline import instrument as inst
from ceers_nircam.offline.simulate import (SimulationConfig, exposure_wcs, plan_exposures,
                                           read_truth, simulate_exposure)

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
    return grid


def _run_pipeline(uncal, outdir):
    from jwst.pipeline import Detector1Pipeline, Image2Pipeline

    Detector1Pipeline.call(uncal, output_dir=str(outdir), save_results=True)
    rate = str(outdir / uncal.split("/")[-1].replace("_uncal", "_rate"))
    Image2Pipeline.call(rate, output_dir=str(outdir), save_results=True)
    return rate, rate.replace("_rate", "_cal")


@pytest.fixture(scope="module")
def calibrated(offline_env, tmp_path_factory):
    """One full-frame NRCA1 F150W exposure with every artifact, through Detector1 and Image2."""
    from ceers_nircam.offline.simulate import best_references

    out = tmp_path_factory.mktemp("pipeline")
    config = SimulationConfig(detectors=("NRCA1",), filters=("F150W",), ndithers=1, ngroups=6)
    exp = plan_exposures(config)[0]
    refs = best_references(exp)
    field = scene.generate_catalog(config.ra, config.dec, density=150, seed=21)
    catalog = vstack([field, _star_grid(config, exp, refs["distortion"])])
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
    with datamodels.ImageModel(calibrated["cal"]) as cal:
        idx = validate.isolated_stars(truth["sources"], cal.data.shape)
        phot = validate.star_photometry(cal.data, cal.dq, truth["sources"],
                                        cal.meta.photometry.pixelarea_steradians, idx)
    assert len(phot) >= 15
    assert np.median(phot["ratio"]) == pytest.approx(1.0, abs=0.01)


def test_sky_is_recovered_within_one_percent(calibrated):
    truth = calibrated["truth"]
    with datamodels.ImageModel(calibrated["cal"]) as cal:
        sky = validate.measure_sky(cal.data, cal.dq, truth["sources"])
    assert sky == pytest.approx(truth["header"]["SKYMJYSR"], rel=0.01)


def test_assign_wcs_puts_truth_at_the_simulated_pixels(calibrated):
    truth = calibrated["truth"]
    src = validate.on_detector(truth["sources"])
    with datamodels.ImageModel(calibrated["cal"]) as cal:
        dx, dy = validate.pixel_offsets(cal.meta.wcs, src)
    assert len(src) > 100
    assert np.max(np.hypot(dx, dy)) < 0.05


def test_jump_step_sees_snowball_cores_and_halos_but_not_their_wings(calibrated):
    # The faint wing beyond the halo radius is what CEERS's snowball expansion is for.
    truth = calibrated["truth"]
    assert len(truth["snowballs"]) >= 3
    with datamodels.ImageModel(calibrated["rate"]) as rate:
        yy, xx = np.mgrid[0:inst.NPIX, 0:inst.NPIX]
        for ev in truth["snowballs"]:
            r = np.hypot(xx - ev["x"], yy - ev["y"])
            core = r <= ev["core_radius"] - 1
            halo = (r > ev["core_radius"] + 1) & (r < 0.8 * ev["halo_radius"])
            wing = (r > ev["halo_radius"] + 3) & (r < ev["outer_radius"])
            assert np.all(rate.dq[core] & datamodels.dqflags.pixel["SATURATED"])
            assert np.mean(rate.dq[halo] & datamodels.dqflags.pixel["JUMP_DET"] > 0) > 0.9
            assert np.mean(rate.dq[wing] & datamodels.dqflags.pixel["JUMP_DET"] > 0) < 0.3


def test_rate_noise_matches_the_pipeline_error(calibrated):
    # Away from sources and flagged pixels, rate minus the noiseless truth is
    # pure Poisson + read noise: its spread must match the ERR the pipeline derives
    # from the synthetic gain and read noise.
    truth = calibrated["truth"]
    with datamodels.ImageModel(calibrated["rate"]) as rate:
        use = (rate.dq == 0) & ~validate.source_footprint(rate.data.shape, truth["sources"])
        resid, err = (rate.data - calibrated["ideal"])[use], rate.err[use]
    assert use.sum() > 1_000_000
    assert validate.noise_ratio(resid, err) == pytest.approx(1.0, abs=0.05)
    assert np.median(resid / err) == pytest.approx(0.0, abs=0.02)


def test_striping_truth_is_the_pipeline_rate(offline_env, tmp_path):
    quiet = dict(sky=False, sources=False, noise=False, wisps=False, snowballs=0, cosmic_rays=0,
                 bad_pixels=False, bias_drifts=False, striping=True)
    config = SimulationConfig(detectors=("NRCB1",), filters=("F200W",), ndithers=1, ngroups=4, **quiet)
    exp = plan_exposures(config)[0]
    uncal, truth_path = simulate_exposure(config, exp, Table(names=("ra", "dec", "mag", "id", "kind",
                                                                    "r_eff", "sersic_n", "axis_ratio",
                                                                    "theta"),
                                                             dtype=(float,) * 3 + (int, str) + (float,) * 4),
                                          str(tmp_path), str(tmp_path / "wisps"))
    from jwst.pipeline import Detector1Pipeline

    rate = Detector1Pipeline.call(uncal)
    truth = read_truth(truth_path)
    pattern = artifacts.striping_image(truth["stripe_rows"], truth["stripe_cols"])
    use = np.zeros(pattern.shape, dtype=bool)
    use[inst.science_region()] = True
    use &= (rate.dq & validate.DO_NOT_USE) == 0  # the mask's dead and hot pixels
    resid = rate.data[use] - pattern[use]
    assert np.std(pattern[use]) > 4e-3
    assert np.abs(np.median(resid)) < 2e-5
    assert np.std(resid) < 2e-3


def test_subarray_exposure_calibrates_like_full_frame(offline_env, tmp_path):
    from ceers_nircam.offline.simulate import best_references

    # Striping off: over 320 columns its mean is not zero and would bias the sky.
    config = SimulationConfig(detectors=("NRCB1",), filters=("F200W",), ndithers=1, ngroups=10,
                              subarray="SUB320", snowballs=1, striping=False)
    exp = plan_exposures(config)[0]
    refs = best_references(exp, config.subarray)
    assert refs["dark"].endswith("jwst_nircam_dark_sub320_synth.fits")
    catalog = vstack([scene.generate_catalog(config.ra, config.dec, density=50, seed=8),
                      _star_grid(config, exp, refs["distortion"], n=4, mags=(21.0, 21.5), size=320,
                                 edge=45)])
    uncal, truth_path, ideal = simulate_exposure(config, exp, catalog, str(tmp_path),
                                                 str(tmp_path / "wisps"), keep_ideal=True)
    rate, cal = _run_pipeline(uncal, tmp_path)
    truth = read_truth(truth_path)
    assert truth["header"]["SUBARRAY"] == "SUB320"
    row = validate.check_cal(cal, truth)
    # A 320-pixel subarray has 4 x 320 reference pixels per group; their noise,
    # through reference-pixel correction, is ~0.6% of the sky of a 107 s exposure.
    assert row["sky_ratio"] == pytest.approx(1.0, abs=0.03)
    assert row["nstars"] >= 8 and row["flux_ratio"] == pytest.approx(1.0, abs=0.01)
    with datamodels.ImageModel(cal) as model:
        assert model.data.shape == (320, 320)
        assert model.meta.subarray.name == "SUB320"
        dx, dy = validate.pixel_offsets(model.meta.wcs, validate.on_detector(truth["sources"], (320, 320)))
        assert np.max(np.hypot(dx, dy)) < 0.05
    with datamodels.ImageModel(rate) as model:
        use = (model.dq == 0) & ~validate.source_footprint(model.data.shape, truth["sources"])
        ratio = validate.noise_ratio((model.data - ideal)[use], model.err[use])
        assert ratio == pytest.approx(1.0, abs=0.05)
