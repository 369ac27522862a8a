"""Sky statistics: clipped row statistics against astropy, the pedestal fit."""

import numpy as np
import pytest
from astropy.stats import sigma_clipped_stats
from scipy import ndimage

from ceers_nircam import background


@pytest.mark.parametrize("sigma,maxiters", [(2.0, 5), (3.0, 1), (2.5, 10)])
def test_clipped_stats_equal_astropy(sigma, maxiters):
    rng = np.random.default_rng(int(sigma * maxiters))
    values = rng.normal(0.1, 0.01, (40, 300)).astype(np.float32)
    values[:, :25] += rng.exponential(0.05, (40, 25)).astype(np.float32)  # sources
    excluded = rng.random(values.shape) < 0.3
    excluded[3] = True  # nothing usable
    values[5, 7] = np.nan
    mean, median, std = background.clipped_stats(values, excluded, sigma, maxiters)
    for i in range(values.shape[0]):
        keep = ~excluded[i] & np.isfinite(values[i])
        if not keep.any():
            assert np.isnan(median[i]) and np.isnan(mean[i])
            continue
        ref = sigma_clipped_stats(values[i][keep], sigma=sigma, maxiters=maxiters)
        np.testing.assert_allclose([mean[i], median[i], std[i]], ref, rtol=2e-5, atol=1e-7)


def test_clipped_stats_ignore_non_finite_values_in_any_layout():
    """NaN and both infinities count as excluded, in rows and in transposed columns."""
    rng = np.random.default_rng(7)
    values = rng.normal(0.0, 1.0, (120, 90))
    values[rng.random(values.shape) < 0.02] = np.nan
    values[rng.random(values.shape) < 0.02] = np.inf
    values[rng.random(values.shape) < 0.02] = -np.inf
    values[:, 4] = -0.0
    excluded = rng.random(values.shape) < 0.2
    for v, e in ((values, excluded), (values.T, excluded.T)):
        mean, median, std = background.clipped_stats(v, e, 2.5, 5)
        for i in range(v.shape[0]):
            keep = ~e[i] & np.isfinite(v[i])
            ref = sigma_clipped_stats(v[i][keep].astype(np.float32), sigma=2.5, maxiters=5)
            np.testing.assert_allclose([mean[i], median[i], std[i]], ref, rtol=2e-5, atol=1e-6)


def test_group_offsets_leave_the_least_squares_residual():
    """Removing one offset per row and per column (unbalanced, some pairs empty) leaves what
    an explicit least-squares fit of all offsets leaves."""
    rng = np.random.default_rng(8)
    npix = 3000
    rows, cols = rng.integers(0, 40, npix), rng.integers(0, 25, npix)
    keep = ~((rows < 10) & (cols < 5))  # a block of pairs with no pixel
    rows, cols = rows[keep], cols[keep]
    values = (rng.normal(size=(rows.size, 3)) + rng.normal(size=(40, 1))[rows]
              + 3 * rng.normal(size=(25, 1))[cols])
    design = np.zeros((rows.size, 65))
    design[np.arange(rows.size), rows] = 1
    design[np.arange(rows.size), 40 + cols] = 1
    expected = values - design @ np.linalg.lstsq(design, values, rcond=None)[0]
    left = background.remove_group_offsets(values.copy(), [rows, cols])
    np.testing.assert_allclose(left, expected, atol=1e-5 * values.std())
    # One labelling: the group means.
    one = background.remove_group_offsets(values.copy(), [rows])
    means = np.array([values[rows == r].mean(axis=0) for r in range(40)])
    np.testing.assert_allclose(one, values - means[rows], atol=1e-12)


def test_clipped_stats_keep_the_shape_of_leading_axes():
    values = np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8)
    _, median, _ = background.clipped_stats(values, np.zeros(values.shape, bool), 3.0, 5)
    assert median.shape == (2, 3)
    np.testing.assert_allclose(median, np.median(values, axis=2))


def test_robust_clipping_is_less_noisy_than_iterated_std_clipping():
    rng = np.random.default_rng(1)
    values = rng.normal(0, 1, (3000, 400))
    excluded = np.zeros(values.shape, bool)
    spread = {}
    for stdfunc in ("std", "robust"):
        mean, median, _ = background.clipped_stats(values, excluded, 2.0, 5, stdfunc)
        spread[stdfunc] = (np.std(mean) * 20, np.std(median) * 20)
    assert spread["std"][1] > 1.55  # a third noisier than a plain median (1.25)
    assert spread["robust"][1] < 1.55
    assert spread["robust"][0] < 1.35  # the clipped mean, about a plain median's noise


def test_pedestal_fits_the_peak_of_the_histogram():
    rng = np.random.default_rng(2)
    sky = rng.normal(0.0931, 0.008, 400_000)
    tail = 0.0931 + rng.exponential(0.05, 20_000)
    value, method = background.pedestal(np.concatenate([sky, tail]))
    assert method == "gaussian"
    assert value == pytest.approx(0.0931, abs=4e-4)
    value, _ = background.pedestal(np.concatenate([sky, tail]), fit_halfwidth=1.5)
    assert value == pytest.approx(0.0931, abs=2e-4)


def test_pedestal_falls_back_to_the_median():
    values = np.full(1000, 3.0)  # outside the histogram range
    value, method = background.pedestal(values)
    assert (value, method) == (3.0, "median")


def test_background2d_follows_a_gradient():
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:256, 0:256]
    image = (1.0 + 0.002 * x + 0.001 * y + rng.normal(0, 0.05, x.shape)).astype(np.float32)
    excluded = np.zeros(image.shape, bool)
    excluded[100:120, 100:120] = True
    image[100:120, 100:120] = 50
    bkg, rms = background.background2d(image, excluded, box=32, filter_size=3)
    truth = 1.0 + 0.002 * x + 0.001 * y
    assert np.max(np.abs(bkg - truth)[32:-32, 32:-32]) < 0.03
    assert np.median(rms) == pytest.approx(0.05, rel=0.2)


def _scene(shape, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    image = (1.0 + 0.001 * x - 0.0005 * y + rng.normal(0, 0.1, shape)).astype(np.float32)
    image[rng.random(shape) < 0.01] += 5.0  # cosmic-ray-like outliers
    excluded = rng.random(shape) < 0.2
    excluded[40:90, 30:110] = True  # a masked galaxy: whole boxes left out
    image[5, 7] = np.nan
    return image, excluded


@pytest.mark.parametrize("estimator", ["median", "biweight"])
@pytest.mark.parametrize("box,filter_size,shape", [(5, 3, (203, 187)), (10, 5, (240, 300)),
                                                   (32, 3, (256, 256)), (16, 1, (100, 130))])
def test_fast_background2d_equals_photutils(estimator, box, filter_size, shape):
    image, excluded = _scene(shape, box)
    ours = background.background2d(image, excluded, box=box, filter_size=filter_size,
                                   estimator=estimator, exclude_percentile=90)
    ref = background.background2d(image, excluded, box=box, filter_size=filter_size,
                                  estimator=estimator, exclude_percentile=90, engine="photutils")
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)


@pytest.mark.parametrize("size", [3, 5])
def test_mesh_median_filter_ignores_the_edges_and_missing_boxes(size):
    mesh = np.random.default_rng(size).normal(0, 1, (23, 31)).astype(np.float32)
    mesh[4, 6] = mesh[10, 0] = mesh[11, 0] = np.nan
    ref = ndimage.generic_filter(mesh, np.nanmedian, size=size, mode="constant", cval=np.nan)
    np.testing.assert_allclose(background._nan_median_filter(mesh, size), ref, rtol=0, atol=1e-7)


@pytest.mark.parametrize("box", [2, 5, 10])
def test_zoom_along_axes_equals_scipy_zoom(box):
    from scipy import ndimage

    mesh = np.random.default_rng(box).normal(0, 1, (13, 17)).astype(np.float32)
    ref = ndimage.zoom(mesh, box, order=3, mode="reflect", grid_mode=True, output=np.float32)
    ours = background._zoom_axis(background._zoom_axis(mesh, box, 13 * box, 0), box, 17 * box, 1)
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_background2d_refuses_a_fully_masked_image():
    image = np.ones((50, 50), np.float32)
    with pytest.raises(ValueError, match="masked"):
        background.background2d(image, np.ones(image.shape, bool), box=10)


def _field(seed, shape=(700, 900)):
    """Noise with compact sources and a masked off-detector corner."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 0.01, shape).astype(np.float32)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    for _ in range(60):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        image += (rng.uniform(0.02, 0.5) * np.exp(-np.hypot(x - cx, y - cy) / 4.0)).astype(np.float32)
    off = (x + y) < 150
    image[off] = np.nan
    return image, off, y / (shape[0] - 1.0), x / (shape[1] - 1.0)


def test_sky_surface_fits_a_smooth_sky_through_sources():
    image, off, v, u = _field(7)
    sky = (0.03 * u - 0.02 * v + 0.025 * (u - 0.4) ** 2 + 0.01 * u * v).astype(np.float32)
    surface = background.sky_surface(image + sky, off, degree=2, box=50)
    err = (surface - sky)[~off]
    assert np.sqrt(np.mean(err ** 2)) < 0.001  # a tenth of the pixel noise


def test_what_is_left_after_the_sky_surface_does_not_depend_on_a_gradient():
    image, off, v, u = _field(8)
    tilt = (0.03 * (0.6 * u + 0.4 * v * v - 0.3 * u * v)).astype(np.float32)
    plain = image - background.sky_surface(image, off, 2, 50)
    tilted = (image + tilt) - background.sky_surface(image + tilt, off, 2, 50)
    assert np.nanmax(np.abs(tilted - plain)) < 1e-4  # a hundredth of the pixel noise
    assert not background.sky_surface(image, off, 0, 50).any()  # degree 0: nothing taken out


def _haloed_field(seed, shape=(600, 800), noise=0.01):
    """Sources whose profile is a compact core and a wide exponential halo holding 15% of
    the flux; the mask covers the cores only. Returns (image less sky, halo light, mask)."""
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(seed)
    points = np.zeros(shape, np.float64)
    n = 120
    iy, ix = rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)
    np.add.at(points, (iy, ix), 10 ** rng.uniform(1.0, 3.0, n))
    y, x = np.mgrid[-120:121, -120:121]
    r = np.hypot(x, y)
    core = np.exp(-0.5 * (r / 1.5) ** 2)
    wing = np.exp(-r / 15.0)
    cores = fftconvolve(points, 0.85 * core / core.sum(), mode="same")
    halos = fftconvolve(points, 0.15 * wing / wing.sum(), mode="same")
    mask = ndimage.binary_dilation(cores > 2 * noise, iterations=3)
    image = (cores + halos + rng.normal(0, noise, shape)).astype(np.float32)
    return image, halos.astype(np.float32), mask


def test_source_halo_recovers_the_light_sources_spread_beyond_their_mask():
    image, halos, mask = _haloed_field(3)
    usable = np.ones(image.shape, bool)
    sky = np.zeros(image.shape, np.float32)
    halo = background.source_halo(image, mask, usable, sky, sky, edges=(0, 3, 6, 12, 24, 48, 96))
    out = ~mask
    # Outside the mask the halos hold about a third of the pixel noise on average.
    assert halos[out].mean() > 0.002
    assert halo.image[out].mean() == pytest.approx(halos[out].mean(), rel=0.05)
    left = (halos - halo.image)[out]
    assert np.sqrt(np.mean(left ** 2)) < 0.3 * np.sqrt(np.mean(halos[out] ** 2))
    assert np.all(halo.weights >= 0)


def test_background_without_the_halo_light_is_not_biased_next_to_sources():
    image, halos, mask = _haloed_field(4)
    usable = np.ones(image.shape, bool)
    kwargs = dict(box=10, filter_size=5, estimator="biweight", exclude_percentile=90,
                  want_rms=False)
    plain, _ = background.background2d(image, mask, **kwargs)
    zero = np.zeros(image.shape, np.float32)
    halo = background.source_halo(image, mask, usable, plain, zero)
    corrected, _ = background.background2d(image - halo.image, mask, **kwargs)
    # The true sky is 0: next to and under the sources the plain background takes the halo
    # light for sky; without the fitted halo most of that bias goes.
    near = ndimage.binary_dilation(mask, iterations=10)
    bias_plain, bias_corrected = plain[near].mean(), corrected[near].mean()
    print(f"\nbackground near sources: {bias_plain / 0.01:.3f} of the pixel noise, "
          f"{bias_corrected / 0.01:.3f} with the halo taken out")
    assert bias_plain > 0.1 * 0.01
    assert abs(bias_corrected) < 0.3 * bias_plain
