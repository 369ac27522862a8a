"""The simulator: names, headers, truth files and injected artifacts, checked against the uncal data."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from stdatamodels.jwst import datamodels

from ceers_nircam.offline import artifacts, scene, validate
from ceers_nircam.offline import instrument as inst
from ceers_nircam.offline.simulate import (SimulationConfig, plan_exposures, read_truth, simulate,
                                           simulate_exposure)

QUIET = dict(sky=False, sources=False, noise=False, wisps=False, snowballs=0, cosmic_rays=0,
             bad_pixels=False, bias_drifts=False, striping=False)


def _sim(tmp_path, keep_ideal=False, detector="NRCA1", filt="F150W", **kw):
    cfg = SimulationConfig(detectors=(detector,), filters=(filt,), ndithers=1, **kw)
    exp = plan_exposures(cfg)[0]
    catalog = cfg.catalog if cfg.catalog is not None else scene.generate_catalog(
        cfg.ra, cfg.dec, density=cfg.density, seed=cfg.seed)
    return simulate_exposure(cfg, exp, catalog, str(tmp_path), str(tmp_path / "wisps"),
                             keep_ideal=keep_ideal), cfg


def _calibrate_groups(uncal, ngroups):
    """Bias-subtracted, linearized, dark-subtracted group values (DN), by the references."""
    raw = fits.getdata(uncal, "SCI").astype(np.float64)[0]
    cache = os.path.join(os.environ["CRDS_PATH"], "references", "jwst")
    bias = fits.getdata(os.path.join(cache, "jwst_nircam_superbias_synth.fits"), "SCI")
    coeffs = fits.getdata(os.path.join(cache, "jwst_nircam_linearity_synth.fits"), "COEFFS")
    dark = fits.getdata(os.path.join(cache, "jwst_nircam_dark_synth.fits"), "SCI")[:ngroups]
    return inst.linearize(raw - bias, coeffs) - dark


def _slope(groups):
    t = inst.group_mean_times(groups.shape[0])
    tc = t - t.mean()
    return np.tensordot(tc, groups - groups.mean(axis=0), axes=1) / (tc**2).sum()


def test_striping_truth_is_what_the_ramps_hold(offline_env, tmp_path):
    # Nothing but 1/f noise: an unweighted slope fit of the uncal ramps, averaged
    # along each amplifier-row, gives back the recorded row pattern.
    (uncal, truth_path, ideal), _ = _sim(tmp_path, keep_ideal=True, ngroups=10,
                                         **{**QUIET, "striping": True})
    truth = read_truth(truth_path)
    pattern = artifacts.striping_image(truth["stripe_rows"], truth["stripe_cols"])
    np.testing.assert_array_equal(ideal, pattern)  # the ideal rate is the striping truth
    sci = inst.science_region()
    assert np.std(truth["stripe_rows"][:, sci[0]]) > 2e-3
    slope = _slope(_calibrate_groups(uncal, 10))
    for amp, cs in enumerate(inst.amp_slices()):
        use = np.zeros(inst.NPIX, dtype=bool)
        use[cs] = True
        use[:inst.NREF] = use[-inst.NREF:] = False
        rows = slope[sci[0]][:, use].mean(axis=1)
        # 16-bit rounding of each group, averaged over ~500 pixels, is ~1e-5 DN/s.
        np.testing.assert_allclose(rows, truth["stripe_rows"][amp][sci[0]], atol=1e-4)
    # The column pattern too, and what is left is the within-row noise no pattern removes.
    resid = (slope - pattern)[sci]
    np.testing.assert_allclose(resid.mean(axis=0), 0.0, atol=1e-4)
    assert resid.std() > 0.3 * np.std(truth["stripe_rows"][:, sci[0]])


def test_names_headers_and_distinct_exposures(offline_env, tmp_path):
    cfg = SimulationConfig(detectors=("NRCA3", "NRCALONG"), filters=("F150W", "F277W"),
                           ndithers=3, ngroups=2, **{**QUIET, "sources": True})
    cat = scene.generate_catalog(cfg.ra, cfg.dec, density=5, seed=3)
    cfg.catalog = cat
    uncals = simulate(cfg, str(tmp_path))
    assert len(uncals) == 6
    pattern = re.compile(r"jw01345001001_02201_0000[123]_(nrca3|nrcalong)_uncal\.fits$")
    assert all(pattern.search(u) for u in uncals)
    seen = set()
    for u in uncals:
        h = fits.getheader(u)
        assert (h["INSTRUME"], h["TELESCOP"], h["EXP_TYPE"]) == ("NIRCAM", "JWST", "NRC_IMAGE")
        assert (h["READPATT"], h["NGROUPS"], h["NFRAMES"], h["GROUPGAP"]) == ("MEDIUM8", 2, 8, 2)
        assert (h["PROGRAM"], h["OBSERVTN"], h["SUBARRAY"], h["PUPIL"]) == ("01345", "001", "FULL", "CLEAR")
        assert h["FILTER"] == ("F150W" if h["DETECTOR"] == "NRCA3" else "F277W")
        assert h["CHANNEL"] == ("SHORT" if h["DETECTOR"] == "NRCA3" else "LONG")
        seen.add((h["DETECTOR"], h["EXPOSURE"]))
        assert fits.getdata(u, "SCI").shape == (1, 2, 2048, 2048)
        assert fits.getdata(u, "SCI").dtype.kind == "u"
    assert len(seen) == 6
    truth_cat = Table.read(tmp_path / "truth_catalog.ecsv")
    assert len(truth_cat) == len(cat)
    ref = Table.read(tmp_path / "reference_catalog.ecsv")
    assert ref.colnames == ["RA", "DEC", "MAG", "rh"]  # as the CEERS HST catalog
    assert len(ref) == (cat["mag"] < 26.0).sum() > 0


def test_reference_catalog_scatter_is_as_stated():
    truth = scene.generate_catalog(215.0, 52.9, radius_arcmin=2.0, density=400, seed=4)
    ref = scene.reference_catalog(truth, mag_limit=30, scatter=0.02, seed=5)
    ddec = (ref["DEC"] - truth["dec"]) * 3600
    dra = (ref["RA"] - truth["ra"]) * np.cos(np.deg2rad(truth["dec"])) * 3600
    assert len(ref) > 1000
    assert np.std(ddec) == pytest.approx(0.02, rel=0.1)
    assert np.std(dra) == pytest.approx(0.02, rel=0.1)
    assert abs(np.mean(dra)) < 0.003 and abs(np.mean(ddec)) < 0.003


def test_sky_wisps_bad_pixels_snowballs_and_cosmic_rays_are_recorded(offline_env, tmp_path):
    (uncal, truth_path), _ = _sim(tmp_path, detector="NRCA3", filt="F150W", ngroups=5,
                                  **{**QUIET, "sky": True, "wisps": True, "wisp_scale": 0.62,
                                     "snowballs": 6, "cosmic_rays": 0.5, "bad_pixels": True})
    truth = read_truth(truth_path)
    h = truth["header"]
    assert h["WISPSCL"] == pytest.approx(0.62) and 0.2 <= h["WISPRMS"] <= 0.3
    assert inst.SKY_MJYSR["F150W"] * 0.9 <= h["SKYMJYSR"] <= inst.SKY_MJYSR["F150W"] * 1.1
    assert os.path.exists(tmp_path / "wisps" / "wisps_nrca3_F150W.fits")
    groups = _calibrate_groups(uncal, 5)
    last = groups[-1]
    # The sky surface and the injected wisp, through the flat, are what the last group holds.
    flat = fits.getdata(os.path.join(os.environ["CRDS_PATH"], "references", "jwst",
                                     "jwst_nircam_flat_f150w_synth.fits"), "SCI")
    steady = validate.true_sky(truth) / h["PHOTMJSR"] * flat + truth["wisp"]
    t_last = inst.group_mean_times(5)[-1]
    template = np.nan_to_num(fits.getdata(tmp_path / "wisps" / "wisps_nrca3_F150W.fits"))
    wisp = template > 0.5 * template.max()
    assert wisp.sum() > 10000
    np.testing.assert_allclose(np.median((last - steady * t_last)[wisp]), 0.0, atol=0.05)
    # The injected wisp is not the template: its departure is seen well above that tolerance.
    assert np.median(np.abs(truth["wisp"] - h["WISPSCL"] * template)[wisp] * t_last) > 0.5
    # Dead pixels collect nothing; hot pixels collect more than the sky.
    bad = truth["badpix"]
    dead = bad[bad["kind"] == "dead"]
    hot = bad[bad["kind"] == "hot"]
    # (the dark reference is subtracted from them too; 0.6 DN allows for 16-bit rounding)
    np.testing.assert_allclose(last[dead["y"], dead["x"]], -inst.DARK_CURRENT * t_last, atol=0.6)
    assert np.all(last[hot["y"], hot["x"]] > steady[hot["y"], hot["x"]] * t_last + 0.4 * t_last)
    # Snowball cores saturate once all of the deposit has arrived, not before it.
    raw = fits.getdata(uncal, "SCI")[0]
    snow = truth["snowballs"]
    assert len(snow) == 6
    for ev in snow:
        x, y, g = int(round(ev["x"])), int(round(ev["y"])), int(ev["group"])
        assert raw[g - 1, y, x] < inst.SATURATION_LEVEL
        if g + 1 < 5:
            assert raw[g + 1, y, x] >= inst.SATURATION_LEVEL
    # Halo charge falls through the recorded levels at the halo and outer radii.
    yy, xx = np.mgrid[0:inst.NPIX, 0:inst.NPIX]
    for ev in snow[snow["group"] < 4]:
        g = int(ev["group"])
        jump = groups[g + 1] - groups[g - 1] - steady * 2 * inst.group_time()
        r = artifacts.snowball_radius(ev, yy, xx)
        for radius, level in ((ev["halo_radius"], artifacts.HALO_EDGE_DN),
                              (ev["outer_radius"] - 1.0, artifacts.WING_END_DN * 1.5)):
            ring = np.abs(r - radius) < 0.5
            assert np.median(jump[ring]) == pytest.approx(level, rel=0.3, abs=0.6)
    # Cosmic rays: the recorded charge appears from its arrival on.
    hits = truth["cosmic_rays"]
    assert 1000 < len(hits) < 30000  # 0.5 events/cm^2/s over 5 groups
    pix = hits["y"] * inst.NPIX + hits["x"]
    once = np.isin(pix, np.flatnonzero(np.bincount(pix) == 1))
    once &= ~artifacts.snowball_footprint(snow, last.shape, "outer")[hits["y"], hits["x"]]
    once &= ~np.isin(pix, bad["y"] * inst.NPIX + bad["x"])
    once &= (hits["group"] >= 1) & (hits["group"] <= 3)
    cr = hits[once][:300]
    g, y, x = cr["group"], cr["y"], cr["x"]
    np.testing.assert_allclose(groups[g + 1, y, x] - groups[g - 1, y, x]
                               - steady[y, x] * 2 * inst.group_time(), cr["charge"], atol=1.5)
    np.testing.assert_allclose(groups[g, y, x] - groups[g - 1, y, x] - steady[y, x] * inst.group_time(),
                               cr["fraction"] * cr["charge"], atol=1.5)


def _wcs_from_uncal(uncal):
    from jwst.assign_wcs import AssignWcsStep

    with datamodels.Level1bModel(uncal) as raw:
        image = datamodels.ImageModel((inst.NPIX, inst.NPIX))
        image.update(raw)
    return AssignWcsStep.call(image).meta.wcs


@pytest.mark.parametrize("error", [(0.0, 0.0), (0.35, -0.21)])
def test_assign_wcs_places_truth_within_tolerance_or_off_by_the_error(offline_env, tmp_path, error):
    centre = SimulationConfig()
    cat = scene.generate_catalog(centre.ra, centre.dec, density=40, seed=9)
    (uncal, truth_path), _ = _sim(tmp_path, detector="NRCB2", filt="F115W", ngroups=2,
                                  catalog=cat, pointing_error=error, dither_error=0.0,
                                  **{**QUIET, "sources": True})
    truth = read_truth(truth_path)
    src = validate.on_detector(truth["sources"])
    assert len(src) > 20
    wcs = _wcs_from_uncal(uncal)
    dra, ddec = validate.wcs_offsets(wcs, src)
    np.testing.assert_allclose(dra, error[0], atol=1e-3)  # arcsec
    np.testing.assert_allclose(ddec, error[1], atol=1e-3)
    if error == (0.0, 0.0):
        dx, dy = validate.pixel_offsets(wcs, src)
        assert np.max(np.hypot(dx, dy)) < 0.05
    h = truth["header"]
    assert (h["PTGERRA"], h["PTGERRD"]) == error


def test_dither_errors_are_shared_by_the_detectors_of_an_exposure(offline_env):
    from ceers_nircam.offline.simulate import exposure_pointing_error

    cfg = SimulationConfig(detectors=("NRCA1", "NRCB1", "NRCALONG"), filters=("F115W", "F277W"),
                           ndithers=3, pointing_error=(0.2, -0.1), dither_error=0.01)
    errors = {}
    for exp in plan_exposures(cfg):
        errors.setdefault(exp.exposure, set()).add(exposure_pointing_error(cfg, exp))
    assert all(len(e) == 1 for e in errors.values())  # one telescope pointing per exposure
    values = np.array([next(iter(e)) for e in errors.values()])
    assert len({tuple(v) for v in values}) == 3  # differing between exposures
    assert np.all(np.abs(values - [0.2, -0.1]) < 0.06)  # 6 sigma


@pytest.mark.parametrize("args,message", [
    (["--detectors", "NRCC1"], "unknown NIRCam detector"),
    (["--filters", "F090W"], "unknown filter"),
    (["--catalog", "missing.ecsv"], "no such catalog"),
    (["--catalog", "garbage.ecsv"], "cannot read catalog"),
    (["--catalog", "nora.ecsv"], "lacks column(s) RA"),
    (["--ngroups", "12"], "ngroups must be between 2 and 10"),
    (["--crds-path-unset"], "CRDS_PATH does not point to a reference cache"),
])
def test_bad_input_is_a_one_line_error(offline_env, tmp_path, args, message):
    (tmp_path / "garbage.ecsv").write_bytes(b"\x00\x01 not a table \xff\n")
    Table({"dec": [52.9], "mag": [22.0]}).write(tmp_path / "nora.ecsv")
    out = tmp_path / "out"
    env = dict(os.environ)
    if args == ["--crds-path-unset"]:
        args = []
        env["CRDS_PATH"] = str(tmp_path / "no-cache")
    proc = subprocess.run([sys.executable, "-m", "ceers_nircam.offline.simulate", str(out), *args],
                          cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR:") and message in lines[0]
    assert not out.exists()


def test_user_catalog_columns_are_case_insensitive(tmp_path):
    Table({"RA": [215.0, 215.01], "Dec": [52.9, 52.91], "MAG": [21.0, 22.5]}).write(tmp_path / "c.ecsv")
    cat = scene.read_catalog(str(tmp_path / "c.ecsv"))
    assert list(cat["mag"]) == [21.0, 22.5]
    assert list(cat["kind"]) == ["star", "star"]


def test_command_line_writes_what_it_was_asked_for(offline_env, tmp_path):
    out = tmp_path / "sims"
    proc = subprocess.run(
        [sys.executable, "-m", "ceers_nircam.offline.simulate", str(out), "--detectors", "NRCB4",
         "--filters", "F200W", "--dithers", "2", "--ngroups", "2", "--density", "20",
         "--pointing-error", "0.1", "-0.05", "--wisp-scale", "0.4", "--observation", "3",
         "--pointing", "nircam3", "--workers", "2"],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import json

    manifest = json.loads((out / "simulation.json").read_text())
    assert manifest["exposures"] == ["jw01345003001_02201_00001_nrcb4_uncal.fits",
                                     "jw01345003001_02201_00002_nrcb4_uncal.fits"]
    for name in manifest["exposures"]:
        assert (out / name).exists()
        h = read_truth(str(out / name.replace("_uncal", "_truth")))["header"]
        assert (h["VISERRA"], h["VISERRD"], h["WISPSCL"]) == (0.1, -0.05, 0.4)
        # ...plus the default 3 mas error of each exposure
        assert (h["PTGERRA"], h["PTGERRD"]) == pytest.approx((0.1, -0.05), abs=0.015)
    assert (out / "wisp_templates" / "wisps_nrcb4_F200W.fits").exists()
    assert not [p for p in out.iterdir() if ".part" in p.name]  # nothing half-written is left


def test_sky_surface_is_recorded_as_injected(offline_env, tmp_path):
    (uncal, truth_path), _ = _sim(tmp_path, detector="NRCA1", filt="F115W", ngroups=3,
                                  **{**QUIET, "sky": True})
    truth = read_truth(truth_path)
    h = truth["header"]
    model = validate.true_sky(truth)
    # By default the sky departs from its mean by 2-5% somewhere on the detector.
    assert 0.02 <= np.abs(model / h["SKYMJYSR"] - 1).max() <= 0.05
    last = _calibrate_groups(uncal, 3)[-1]
    flat = fits.getdata(os.path.join(os.environ["CRDS_PATH"], "references", "jwst",
                                     "jwst_nircam_flat_f115w_synth.fits"), "SCI")
    sky = last / flat / inst.group_mean_times(3)[-1] * h["PHOTMJSR"]  # back to MJy/sr
    sci = inst.science_region()
    for corner in ((slice(10, 110), slice(10, 110)), (slice(-110, -10), slice(-110, -10)),
                   (slice(10, 110), slice(-110, -10))):
        np.testing.assert_allclose(np.median(sky[sci][corner]), np.median(model[sci][corner]),
                                   rtol=2e-3)


def test_exposures_made_in_parallel_are_the_ones_made_in_turn(offline_env, tmp_path):
    """Each exposure draws from its own seeded generator, so two worker processes write
    the same ramps, noiseless rates and truth as one process."""
    cfg = SimulationConfig(detectors=("NRCA3", "NRCB1"), filters=("F150W",), ndithers=2, ngroups=2,
                           subarray="SUB160")
    catalog = scene.generate_catalog(cfg.ra, cfg.dec, density=20, seed=2)
    serial = simulate(cfg, str(tmp_path / "serial"), catalog=catalog, save_ideal=True)
    parallel = simulate(cfg, str(tmp_path / "parallel"), catalog=catalog, save_ideal=True, workers=2)
    assert [os.path.basename(p) for p in parallel] == [os.path.basename(p) for p in serial]
    assert len(serial) == 4
    for one, two in zip(serial, parallel):
        np.testing.assert_array_equal(fits.getdata(one, "SCI"), fits.getdata(two, "SCI"))
        for kind in ("ideal", "truth"):
            with fits.open(one.replace("_uncal", f"_{kind}")) as a, \
                    fits.open(two.replace("_uncal", f"_{kind}")) as b:
                assert [h.name for h in a] == [h.name for h in b]
                for ha, hb in zip(a, b):
                    if ha.data is not None:
                        np.testing.assert_array_equal(np.asarray(ha.data), np.asarray(hb.data))
    assert sorted(os.listdir(tmp_path / "parallel" / "wisp_templates")) == ["wisps_nrca3_F150W.fits"]


def test_sky_level_differs_between_detectors(offline_env, tmp_path):
    cfg = SimulationConfig(detectors=("NRCA1", "NRCA2", "NRCB1", "NRCB2"), filters=("F200W",),
                           ndithers=1, ngroups=2, subarray="SUB160", **{**QUIET, "sky": True})
    simulate(cfg, str(tmp_path), catalog=scene.generate_catalog(cfg.ra, cfg.dec, density=1, seed=1))
    skies = [read_truth(str(p))["header"]["SKYMJYSR"] for p in sorted(tmp_path.glob("*_truth.fits"))]
    assert len(set(skies)) == 4
    assert np.ptp(skies) > 0.02 * np.mean(skies)  # pedestals differ by percents


def test_pointing_errors_are_on_by_default():
    from ceers_nircam.offline.simulate import exposure_pointing_error, visit_pointing_error

    errors = []
    for seed in range(300):
        cfg = SimulationConfig(detectors=("NRCA1",), filters=("F150W",), ndithers=2, seed=seed)
        first, second = plan_exposures(cfg)
        errors.append(visit_pointing_error(cfg, first))
        jitter = np.subtract(exposure_pointing_error(cfg, second), exposure_pointing_error(cfg, first))
        errors[-1] += tuple(jitter)
    errors = np.array(errors)
    # 0.1 arcsec (1 sigma, radial) for the visit; 3 mas per exposure, so sqrt(2) x 3 mas between two.
    assert np.sqrt(np.mean(np.sum(errors[:, :2] ** 2, axis=1))) == pytest.approx(0.1, rel=0.12)
    assert np.sqrt(np.mean(np.sum(errors[:, 2:] ** 2, axis=1))) == pytest.approx(
        0.003 * np.sqrt(2), rel=0.12)


def test_read_noise_excess_scales_the_injected_read_noise(offline_env, tmp_path):
    (uncal, truth_path), _ = _sim(tmp_path, detector="NRCALONG", filt="F444W", ngroups=2,
                                  **{**QUIET, "noise": True, "readnoise_excess": 1.3})
    h = read_truth(truth_path)["header"]
    expected = 1.3 * inst.READNOISE_CDS["LONG"] / np.sqrt(2 * inst.NFRAMES)
    assert h["RNGROUP"] == pytest.approx(expected) and h["RNEXCESS"] == 1.3
    raw = fits.getdata(uncal, "SCI")[0].astype(float)
    diff = raw[1, 100:1900, 100:1900] - raw[0, 100:1900, 100:1900]
    # Two groups' read noise, plus 16-bit rounding of each (1/12 DN^2).
    assert np.std(diff) == pytest.approx(np.sqrt(2 * expected**2 + 2 / 12), rel=0.02)
