"""Time-resolved 1/f readout noise: spectrum, readout order and the striping truth."""

import numpy as np
import pytest

from ceers_nircam import nircam
from ceers_nircam.offline import instrument as inst
from ceers_nircam.offline import noise


@pytest.mark.parametrize("band", [(10.0, 1000.0), (100.0, 40000.0)])
def test_series_has_the_stated_power_in_its_band(band):
    x = noise.one_over_f_series(np.random.default_rng(1), 2**20, nircam.PIXEL_TIME, 2.0, band,
                                nseries=8)
    # Variance of a 1/f process between f1 and f2 is psd(1 Hz) ln(f2 / f1).
    assert x.var() == pytest.approx(2.0 * np.log(band[1] / band[0]), rel=0.03)


@pytest.mark.parametrize("detector", ["NRCA1", "NRCA2", "NRCB1", "NRCB2"])
def test_readout_order_follows_the_detector_axes(detector):
    fast, slow = nircam.READOUT_AXES[detector]
    block = np.arange(6 * 4).reshape(6, 4)  # read order: 6 rows of 4 pixels
    image = noise._read_order_to_image(block, detector)
    first = np.unravel_index(np.argmin(image), image.shape)
    assert first == (0 if slow > 0 else 5, 0 if fast > 0 else 3)
    # Consecutive pixels of a row are neighbours along x.
    assert abs(image[first[0], 1] - image[first[0], 0]) == 1


@pytest.fixture(scope="module")
def injected():
    """1/f noise alone on a full frame of 9 groups, with its unweighted slope."""
    ro = noise.Readout("NRCB2", (inst.NPIX, inst.NPIX), inst.NAMPS, 9, inst.NFRAMES, inst.GROUPGAP)
    light = ~inst.reference_pixel_mask()
    times = inst.group_mean_times(9)
    onef = noise.OneOverF(np.random.default_rng(7), ro, light, inst.group_time(),
                          noise.PSD_COMMON["SHORT"], noise.PSD_OWN["SHORT"])
    frames = np.array([onef.frame(g) for g in range(9)])
    tc = times - times.mean()
    slope = np.tensordot(tc / (tc**2).sum(), frames, axes=1)
    return dict(frames=frames, slope=slope, light=light, truth=onef.truth(), onef=onef)


def test_truth_is_the_row_and_column_means_of_the_slope(injected):
    rows, cols = injected["truth"]
    slope, light = injected["slope"], injected["light"]
    sci = inst.science_region()
    for a, cs in enumerate(inst.amp_slices()):
        use = light[:, cs][sci[0]].all(axis=0)  # the amplifier's light-sensitive columns
        mean = slope[sci[0], cs][:, use].mean(axis=1)
        np.testing.assert_allclose(rows[a][sci[0]], mean, atol=1e-6)
    pattern = np.zeros_like(slope)
    for a, cs in enumerate(inst.amp_slices()):
        pattern[:, cs] = rows[a][:, None]
    np.testing.assert_allclose(cols[sci[1]], (slope - pattern)[sci].mean(axis=0), atol=1e-6)
    assert np.all(slope[~light] == 0)  # reference pixels stay quiet


def test_noise_is_striped_correlated_across_outputs_and_has_a_within_row_part(injected):
    rows, cols = injected["truth"]
    slope = injected["slope"]
    sci = inst.science_region()
    r = rows[:, sci[0]]
    # Half of the power is common to the four outputs (PSD_COMMON = PSD_OWN).
    corr = np.corrcoef(r - r.mean(axis=1, keepdims=True))
    assert np.mean(corr[np.triu_indices(4, 1)]) == pytest.approx(0.5, abs=0.15)
    pattern = np.zeros_like(slope)
    for a, cs in enumerate(inst.amp_slices()):
        pattern[:, cs] = rows[a][:, None]
    within = (slope - pattern - cols[None, :])[sci]
    # Stripes carry most of the power, but a fifth or more is pixel-to-pixel along rows.
    assert 0.15 < within.var() / slope[sci].var() < 0.5


def test_noise_is_new_in_every_group(injected):
    frames = injected["frames"]
    sci = inst.science_region()
    a, b = frames[3][sci], frames[4][sci]
    # Rows average the fast part out; what is left from group to group is hardly related.
    fast_a = a - a.mean(axis=1, keepdims=True)
    fast_b = b - b.mean(axis=1, keepdims=True)
    assert abs(np.corrcoef(fast_a.ravel(), fast_b.ravel())[0, 1]) < 0.05


@pytest.mark.parametrize("power", [0.0, 0.4, 1.0, 3.0])
def test_fit_weights_give_the_slope_of_a_line_and_ignore_its_offset(power):
    c = noise.fit_weights(9, power)
    assert np.dot(c, 2.5 * np.arange(9) + 7.0) == pytest.approx(2.5)
    # Power 0 is the plain least-squares fit; higher powers lean on the ends.
    if power == 0:
        x = np.arange(9) - 4.0
        np.testing.assert_allclose(c, x / (x**2).sum())
    else:
        assert abs(c[0]) > abs(noise.fit_weights(9, 0.0)[0])


def test_weighting_power_follows_stcal_signal_to_noise_bounds():
    snr = np.array([0.0, 4.9, 5.0, 9.9, 10.0, 19.9, 20.0, 49.9, 50.0, 99.0, 100.0, 1e4])
    np.testing.assert_array_equal(noise.weighting_power(snr),
                                  [0, 0, 0.4, 0.4, 1, 1, 3, 3, 6, 6, 10, 10])


def test_truth_follows_each_pixels_weighting(injected):
    onef, frames = injected["onef"], injected["frames"]
    power = np.where(np.arange(inst.NPIX)[None, :] < 1024, 0.4, 3.0) * np.ones((inst.NPIX, 1))
    expected = np.where(power == 0.4,
                        np.tensordot(noise.fit_weights(9, 0.4), frames, axes=1),
                        np.tensordot(noise.fit_weights(9, 3.0), frames, axes=1)) / inst.group_time()
    np.testing.assert_allclose(onef.slope(power), expected, atol=1e-6)
