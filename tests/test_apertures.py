"""Empty-aperture noise against ERR: white noise, noise correlated with a known kernel,
masked sources, and the APERNOISE table."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy import ndimage

from ceers_nircam import apertures


def correlated_noise(shape, kernel, rng):
    """White noise convolved with ``kernel``, scaled to unit per-pixel variance."""
    noise = ndimage.convolve(rng.standard_normal(shape), kernel, mode="wrap")
    return noise / np.sqrt(np.sum(kernel ** 2))


def expected_ratio(kernel, radius):
    """Exact aperture noise over the quadrature sum of unit per-pixel errors: the sum over
    an aperture A of noise made with kernel k has variance sum_j (sum_{i in A} k_{i-j})^2."""
    dy, dx = apertures.disk_offsets(radius)
    size = int(np.ceil(radius)) + kernel.shape[0]
    disk = np.zeros((2 * size + 1, 2 * size + 1))
    disk[dy + size, dx + size] = 1.0
    weights = ndimage.correlate(disk, kernel, mode="constant")
    return np.sqrt(np.sum(weights ** 2) / np.sum(kernel ** 2) / dy.size)


@pytest.mark.parametrize("radius", [1.0, 3.0, 6.0])
def test_white_noise_agrees_with_err(radius):
    rng = np.random.default_rng(1)
    sigma = 0.02
    image = rng.normal(0.0, sigma, (1200, 1200))
    result = apertures.aperture_noise(image, np.full(image.shape, sigma), np.zeros(image.shape, bool),
                                      radius)
    print(f"\nr={radius}: {result.count} apertures, noise / ERR {result.ratio:.3f}")
    assert result.count > 2000
    assert result.predicted == pytest.approx(sigma * np.sqrt(apertures.disk_offsets(radius)[0].size))
    assert result.ratio == pytest.approx(1.0, abs=0.04)


@pytest.mark.parametrize("kernel_name,kernel", [
    ("along rows", np.array([[0.0] * 5, [0.5, 0.8, 1.0, 0.8, 0.5], [0.0] * 5])),
    ("drizzle-like 2x2", np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])),
])
@pytest.mark.parametrize("radius", [2.0, 6.0])
def test_correlated_noise_gives_the_exact_ratio(kernel_name, kernel, radius):
    rng = np.random.default_rng(2)
    image = correlated_noise((1500, 1500), kernel, rng)
    result = apertures.aperture_noise(image, np.ones(image.shape), np.zeros(image.shape, bool),
                                      radius)
    truth = expected_ratio(kernel, radius)
    print(f"\n{kernel_name}, r={radius}: noise / ERR {result.ratio:.3f}, exact {truth:.3f}")
    assert truth > 1.3  # the case is one ERR alone gets wrong
    assert result.ratio == pytest.approx(truth, rel=0.04)


def test_apertures_stay_off_masked_pixels_and_sources_do_not_count():
    rng = np.random.default_rng(3)
    image = rng.normal(0.0, 1.0, (1000, 1000))
    excluded = np.zeros(image.shape, bool)
    for y, x in rng.integers(20, 980, (400, 2)):
        image[y - 3:y + 4, x - 3:x + 4] += 500.0
        excluded[y - 3:y + 4, x - 3:x + 4] = True
    radius = 4.0
    yc, xc = apertures.empty_centres(excluded, radius)
    half = int(np.ceil(radius)) + apertures.MARGIN
    assert yc.size > 500
    assert not any(excluded[y - half:y + half + 1, x - half:x + half + 1].any() for y, x in zip(yc, xc))
    result = apertures.aperture_noise(image, np.ones(image.shape), excluded, radius)
    print(f"\nsources masked: noise / ERR {result.ratio:.3f}")
    assert result.ratio == pytest.approx(1.0, abs=0.04)
    # Without the mask the sources fall into apertures: the robust scatter resists them, but
    # not fully.
    unmasked = apertures.aperture_noise(image, np.ones(image.shape), np.zeros(image.shape, bool),
                                        radius)
    assert unmasked.ratio > 1.05


def test_no_empty_aperture_or_no_error_gives_nan():
    image = np.zeros((50, 50))
    result = apertures.aperture_noise(image, np.ones(image.shape), np.ones(image.shape, bool), 3.0)
    assert result.count == 0 and np.isnan(result.ratio)
    result = apertures.aperture_noise(image, np.zeros(image.shape), np.zeros(image.shape, bool), 3.0)
    assert result.count > 0 and np.isnan(result.ratio)


def test_curve_table_round_trip_and_interpolation(tmp_path):
    curve = [apertures.ApertureNoise(2.0, 100, 2.2, 2.0), apertures.ApertureNoise(6.0, 50, 7.5, 6.0),
             apertures.ApertureNoise(12.0, 0, float("nan"), float("nan"))]
    path = str(tmp_path / "curve.fits")
    fits.HDUList([fits.PrimaryHDU(), apertures.curve_hdu(curve)]).writeto(path)
    table = Table.read(path, hdu="APERNOISE")
    np.testing.assert_allclose(table["RATIO"][:2], [1.1, 1.25], rtol=1e-6)
    assert apertures.ratio_at(table, 4.0) == pytest.approx(1.175)
    assert apertures.ratio_at(table, 1.0) == pytest.approx(1.1)
    assert apertures.ratio_at(table, 20.0) == pytest.approx(1.25)  # radius 12 has no apertures
    assert apertures.ratio_at(curve, 4.0) == pytest.approx(1.175)  # the list itself reads alike


def test_rescaled_curve_is_the_curve_of_the_rescaled_err():
    curve = [apertures.ApertureNoise(2.0, 100, 2.2, 2.0), apertures.ApertureNoise(6.0, 50, 7.5, 6.0)]
    factor = apertures.ratio_at(curve, 4.0)
    scaled = apertures.rescaled(curve, factor)
    assert apertures.ratio_at(scaled, 4.0) == pytest.approx(1.0)
    assert [c.ratio for c in scaled] == pytest.approx([1.1 / 1.175, 1.25 / 1.175])
    assert [c.measured for c in scaled] == [2.2, 7.5]  # the noise itself is what it was
