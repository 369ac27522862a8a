"""Wisp templates and the scale fit on small synthetic images."""

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

from ceers_nircam.cli import CeersError
from ceers_nircam.steps import wisps


def wisp_shape(shape=(300, 400)):
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    ring = np.exp(-0.5 * ((np.hypot((x - 200) / 150, (y - 150) / 110) - 0.6) / 0.2) ** 2)
    return (0.05 * ring).astype(np.float32)


def scene(scale, shape=(300, 400), seed=0, distortion=0.0):
    """Sky + noise + sources + scale x template (optionally distorted smoothly)."""
    rng = np.random.default_rng(seed)
    template = wisp_shape(shape)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    warp = 1 + distortion * np.sin(x / 60.0) * np.cos(y / 45.0)
    image = 0.09 + rng.normal(0, 0.01, shape) + scale * template * warp
    for _ in range(40):
        cx, cy = rng.uniform(0, shape[1]), rng.uniform(0, shape[0])
        image += rng.uniform(0.05, 2) * np.exp(-0.5 * ((x - cx) ** 2 + (y - cy) ** 2) / 2.0**2)
    return image.astype(np.float32), template


@pytest.mark.parametrize("scale", [0.4, 0.8, 1.2])
def test_fit_recovers_the_scale(scale):
    image, template = scene(scale, seed=int(scale * 10))
    err = np.full(image.shape, 0.01, np.float32)
    excluded = np.zeros(image.shape, bool)
    params = wisps.WispParams(fit=True, seg_box=64)
    excluded |= wisps.source_mask(image, err, excluded, params)
    region = (slice(0, 300), slice(0, 400))
    found, scales, curve, coeffs = wisps.fit_scale(image, template, excluded, region, params)
    assert found == pytest.approx(scale, abs=0.02)
    assert coeffs is not None and coeffs[0] > 0
    assert scales[0] == pytest.approx(0.01) and scales[-1] == pytest.approx(1.99)


def test_fit_with_a_distorted_wisp_stays_close():
    image, template = scene(0.9, seed=5, distortion=0.25)
    excluded = wisps.source_mask(image, np.full(image.shape, 0.01, np.float32),
                                 np.zeros(image.shape, bool), wisps.WispParams(fit=True, seg_box=64))
    found, *_ = wisps.fit_scale(image, template, excluded, (slice(None), slice(None)))
    assert found == pytest.approx(0.9, abs=0.05)


@pytest.mark.parametrize("method", ["mad", "lsq"])
def test_fitting_row_offsets_keeps_strong_stripes_out_of_the_scale(method):
    # Stripes of a third of the wisp's peak: the template is used to cancel some of them
    # unless an offset per amplifier-row is fitted with the scale.
    errors = {"none": [], "centre": []}
    for seed in range(4):
        image, template = scene(0.8, shape=(512, 512), seed=seed)
        rng = np.random.default_rng(100 + seed)
        image += np.repeat(rng.normal(0, 0.012, (512, 4)), 128, axis=1).astype(np.float32)
        excluded = wisps.source_mask(image, np.full(image.shape, 0.01, np.float32),
                                     np.zeros(image.shape, bool), wisps.WispParams(fit=True, seg_box=64))
        for destripe in errors:
            params = wisps.WispParams(fit=True, method=method, destripe=destripe)
            found = wisps.fit_scale(image, template, excluded, (slice(None), slice(None)), params)[0]
            errors[destripe].append(found - 0.8)
    rms = {k: np.sqrt(np.mean(np.square(v))) for k, v in errors.items()}
    assert rms["centre"] < 0.5 * rms["none"] and rms["centre"] < 0.01


@pytest.mark.parametrize("destripe", ["centre", "highpass"])
def test_destriping_options_recover_the_scale(destripe):
    image, template = scene(0.9, shape=(512, 512), seed=7)
    excluded = wisps.source_mask(image, np.full(image.shape, 0.01, np.float32),
                                 np.zeros(image.shape, bool), wisps.WispParams(fit=True, seg_box=64))
    params = wisps.WispParams(fit=True, method="lsq", destripe=destripe)
    found, scales, curve, coeffs = wisps.fit_scale(image, template, excluded,
                                                   (slice(None), slice(None)), params)
    assert found == pytest.approx(0.9, abs=0.02)
    assert np.argmin(curve) == np.argmin(np.abs(scales - found))  # the curve's lowest point


def test_mad_curve_is_the_squared_median_absolute_deviation():
    rng = np.random.default_rng(1)
    values, tvalues = rng.normal(size=1001).astype(np.float32), rng.random(1001).astype(np.float32)
    curve = wisps.mad_curve(values, tvalues, [0.0, 0.5])
    for c, got in zip([0.0, 0.5], curve):
        r = values - np.float32(c) * tvalues
        assert got == pytest.approx(np.median(np.abs(r - np.median(r))) ** 2, rel=1e-6)


def test_best_scale_falls_back_to_the_grid_minimum():
    scales = np.linspace(0.01, 1.99, 100)
    found, coeffs = wisps.best_scale(scales, -((scales - 1.0) ** 2), 0.2)  # a maximum, not a minimum
    assert coeffs is None and found in (scales[0], scales[-1])
    found, coeffs = wisps.best_scale(scales, (scales - 0.73) ** 2 + 1, 0.2)
    assert found == pytest.approx(0.73, abs=1e-6)


@pytest.mark.parametrize("name", ["wisps_nrcb4_F200W.fits", "WISP_NRCB4_F200W_CLEAR.fits"])
def test_both_template_namings_are_found(name, tmp_path):
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(tmp_path / name)
    assert wisps.find_template(str(tmp_path), "NRCB4", "F200W").endswith(name)


def test_missing_template_names_what_was_looked_for(tmp_path, monkeypatch):
    with pytest.raises(CeersError, match="wisps_nrca4_F150W.fits or WISP_NRCA4_F150W_CLEAR.fits"):
        wisps.find_template(str(tmp_path), "NRCA4", "F150W")
    monkeypatch.delenv(wisps.TEMPLATE_ENV, raising=False)
    with pytest.raises(CeersError, match="CEERS_WISP_TEMPLATES"):
        wisps.template_directory(None)
    monkeypatch.setenv(wisps.TEMPLATE_ENV, str(tmp_path))
    assert wisps.template_directory(None) == str(tmp_path)


def test_template_from_sci_extension_and_shape_check(tmp_path):
    path = tmp_path / "WISP_NRCA3_F150W_CLEAR.fits"
    data = np.arange(16, dtype=np.float32).reshape(4, 4)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="SCI")]).writeto(path)
    np.testing.assert_array_equal(wisps.read_template(str(path), (4, 4)), data)
    with pytest.raises(CeersError, match="does not match"):
        wisps.read_template(str(path), (8, 8))


def test_clean_template_zeroes_nans_and_where_the_image_is_zero():
    template = np.array([[np.nan, 1.0], [2.0, 3.0]], np.float32)
    image = np.array([[5.0, 0.0], [1.0, 1.0]], np.float32)
    np.testing.assert_array_equal(wisps.clean_template(template, image), [[0, 0], [2, 3]])


def _model(detector, filt, shape=(300, 400)):
    image, template = scene(0.7, shape)
    model = datamodels.ImageModel(data=image, err=np.full(shape, 0.01, np.float32),
                                  dq=np.zeros(shape, np.uint32))
    model.meta.instrument.detector, model.meta.instrument.filter = detector, filt
    return model, template


def test_manual_apply_subtracts_scale_times_template():
    model, template = _model("NRCA3", "F150W")
    before = model.data.copy()
    model, status = wisps.apply(model, wisps.WispParams(scale=0.7), template)
    assert status.applied and status.values["scale"] == 0.7
    np.testing.assert_array_equal(model.data, before - np.float32(0.7) * template)


def test_other_detectors_and_filters_are_left_alone():
    for det, filt in (("NRCA1", "F150W"), ("NRCA3", "F115W"), ("NRCALONG", "F277W")):
        model, template = _model(det, filt)
        before = model.data.copy()
        model, status = wisps.apply(model, wisps.WispParams(scale=0.7), template)
        assert not status.applied and "no wisps" in status.message
        np.testing.assert_array_equal(model.data, before)


@pytest.mark.parametrize("kwargs", [{}, {"scale": 0.5, "fit": True}])
def test_one_mode_must_be_chosen(kwargs):
    with pytest.raises(CeersError, match="--scale S or --fit"):
        wisps.WispParams(**kwargs).check()


def test_region_of_a_subarray():
    ys, xs = wisps.region_slices("NRCA3", (640, 640), substrt=(1, 1409))
    # NRCA3's region is x 300-1300, y 1100-2046 of the full frame
    assert (ys.start, ys.stop, xs.start, xs.stop) == (0, 638, 300, 640)
