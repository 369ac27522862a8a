"""Masks: footprints, fast dilations and counts against scipy, the tiered source mask."""

import numpy as np
import pytest
from scipy import ndimage

from ceers_nircam import masking


def test_disk_and_ring_footprints():
    assert masking.disk(7).sum() == 149  # pixels with dx^2 + dy^2 <= 49
    assert masking.disk(15).sum() == 709
    assert masking.disk(0).sum() == 1
    ring = masking.ring(10, 2)
    y, x = np.nonzero(ring)
    d = np.hypot(x - 11, y - 11)
    assert d.min() >= 9 and d.max() <= 11 and ring[11, 11] == 0


@pytest.mark.parametrize("radius", [1, 2.5, 7, 15])
def test_disk_count_is_a_correlation_with_the_disk(radius):
    rng = np.random.default_rng(int(radius * 10))
    plane = rng.random((50, 61)) < 0.3
    r = int(radius)
    padded = np.pad(plane, r, mode="symmetric")
    expected = ndimage.correlate(plane.astype(int), masking.disk(radius).astype(int), mode="reflect")
    np.testing.assert_array_equal(masking.disk_count(padded, radius), expected)


@pytest.mark.parametrize("radius", [1, 3, 7.5, 35])
def test_dilate_disk_equals_binary_dilation(radius):
    rng = np.random.default_rng(3)
    mask = rng.random((90, 80)) < 0.002
    mask[0, 5] = mask[89, 79] = True  # edges
    np.testing.assert_array_equal(masking.dilate_disk(mask, radius),
                                  ndimage.binary_dilation(mask, masking.disk(radius)))
    assert not masking.dilate_disk(np.zeros((5, 5), bool), radius).any()


@pytest.mark.parametrize("size", [1, 2, 3, 4, 11, 15, 21])
def test_dilate_square_equals_binary_dilation(size):
    mask = np.random.default_rng(size).random((57, 83)) < 0.02
    expected = ndimage.binary_dilation(mask, np.ones((size, size), bool)) if size > 1 else mask
    np.testing.assert_array_equal(masking.dilate_square(mask, size), expected)


def test_segments_keep_only_large_regions():
    above = np.zeros((20, 20), bool)
    above[2:4, 2:4] = True  # 4 pixels
    above[10:13, 10:15] = True  # 15 pixels
    above[15, 0] = above[16, 1] = True  # diagonal pair: one region with 8-connectivity
    kept = masking.segments(above, 5)
    assert kept[11, 12] and not kept[2, 2] and kept.sum() == 15
    assert masking.segments(above, 2)[15, 0]
    assert not masking.segments(above, 2, connectivity=4)[15, 0]


def test_dq_mask():
    dq = np.array([0, 1, 4, 6, 2048])
    np.testing.assert_array_equal(masking.dq_mask(dq), [False, True, True, True, True])
    np.testing.assert_array_equal(masking.dq_mask(dq, 2), [False, False, False, True, False])


def test_fast_gaussian_matches_scipy():
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.normal(size=(256, 256)), 3).astype(np.float32) * 50
    for sigma in (6.0, 15.0, 25.0):
        fast = masking.gaussian_smooth(image, sigma)
        slow = ndimage.gaussian_filter(image, sigma, mode="reflect")
        inner = (slice(40, -40), slice(40, -40))
        assert np.std((fast - slow)[inner]) < 0.1 * np.std(slow[inner])


def _scene(shape=(300, 300), seed=0, noise=1.0):
    """Sky with a gradient, noise and Gaussian sources of known positions and sizes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    image = 5.0 + 0.01 * x + rng.normal(0, noise, shape)
    sources = []
    for _ in range(25):
        cx, cy = rng.uniform(20, shape[1] - 20), rng.uniform(20, shape[0] - 20)
        size, peak = rng.uniform(1.0, 6.0), rng.uniform(3.0, 200.0) * noise
        image += peak * np.exp(-0.5 * ((x - cx) ** 2 + (y - cy) ** 2) / size**2)
        sources.append((cx, cy, size, peak))
    return image.astype(np.float32), sources


def test_tiered_mask_covers_sources_and_spares_the_sky():
    image, sources = _scene()
    excluded = np.zeros(image.shape, bool)
    excluded[100:103, 200:260] = True
    image[101, 210] = np.nan
    bits = masking.tiered_source_mask(image, excluded)
    assert np.all(bits[excluded] & 1) and bits[101, 210] & 1
    for cx, cy, size, peak in sources:
        if peak > 8:  # well above the noise once smoothed
            assert bits[int(round(cy)), int(round(cx))] >> 1, (cx, cy, size, peak)
    y, x = np.mgrid[0:300, 0:300]
    far = np.ones(image.shape, bool)
    for cx, cy, size, _ in sources:
        far &= np.hypot(x - cx, y - cy) > 6 * size + 25
    assert far.sum() > 5000
    assert np.mean(bits[far] >> 1 != 0) < 0.1
    assert {int(b) for b in np.unique(bits >> 1)} <= set(range(16))


def test_fast_ring_median_gives_the_mask_of_the_plain_filter():
    image, _ = _scene(shape=(256, 256), seed=4)
    fast = masking.tiered_source_mask(image) > 1
    plain = masking.tiered_source_mask(image, params=masking.SourceMaskParams(ring_block=1)) > 1
    jaccard = (fast & plain).sum() / (fast | plain).sum()
    assert jaccard > 0.85
    background = masking.ring_median(image, 40, 3)
    slow = masking.ring_median(image, 40, 3, block=1)
    assert np.median(np.abs(background - slow)[40:-40, 40:-40]) < 0.15  # noise 1, ring 750 px


def test_source_mask_params_need_one_value_per_tier():
    with pytest.raises(ValueError, match="one per tier"):
        masking.SourceMaskParams(smooth_sigmas=(5.0, 2.0))
    p = masking.SourceMaskParams(smooth_sigmas=(5.0, 2.0), nsigmas=(2.0, 2.0), min_areas=(5, 3),
                                 dilations=(5, 3))
    image, _ = _scene(seed=2)
    assert masking.tiered_source_mask(image, params=p).max() < 8


def test_core_of_a_source_wider_than_the_ring_is_masked():
    # A bright galaxy (exponential, scale 40 px) far wider than the mosaics' 80-pixel ring,
    # with the clipping the mosaic masks use: its centre must not be left as a hole.
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:800, 0:800]
    r = np.hypot(x - 400, y - 400)
    image = (3.0 * np.exp(-r / 40.0) + rng.normal(0, 0.01, (800, 800))).astype(np.float32)
    params = masking.SourceMaskParams(ring_radius=80, ring_width=4, smooth_sigmas=(1.0, 1.0),
                                      nsigmas=(1.5, 1.5), min_areas=(15, 3), dilations=(21, 3),
                                      first_extra_dilation=0, clip_box=100,
                                      threshold_noise="pixel")
    bits = masking.tiered_source_mask(image, None, params)
    masked = masking.tier_sources(bits)
    assert masked[r < 150].all()
    assert masked[r > 390].mean() < 0.05  # the sky around stays unmasked


def test_a_sky_gradient_is_not_taken_for_a_large_source():
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:600, 0:600]
    image = (0.01 * (x + y) / 1200.0 + rng.normal(0, 0.01, (600, 600))).astype(np.float32)
    params = masking.SourceMaskParams(ring_radius=80, ring_width=4, smooth_sigmas=(1.0,),
                                      nsigmas=(5.0,), min_areas=(15,), dilations=(21,),
                                      first_extra_dilation=0, clip_box=100, threshold_noise="pixel")
    bits = masking.tiered_source_mask(image, None, params)
    assert masking.tier_sources(bits).mean() < 0.01


def test_the_large_source_mask_does_not_move_with_a_sky_gradient():
    # Its threshold counts the pixel noise about the smoothed image; the image's own spread
    # grows with a gradient (here 3 pixel sigma from corner to corner), which shrank the mask
    # by 38%.
    rng = np.random.default_rng(6)
    y, x = np.mgrid[0:600, 0:600]
    image = rng.normal(0, 0.01, (600, 600)).astype(np.float32)
    for cy, cx, amp in ((150, 150, 0.1), (420, 380, 0.06), (300, 520, 0.15)):
        image += (amp * np.exp(-np.hypot(x - cx, y - cy) / 35.0)).astype(np.float32)
    params = masking.SourceMaskParams(ring_radius=80, ring_width=4, smooth_sigmas=(1.0,),
                                      nsigmas=(50.0,), min_areas=(15,), dilations=(21,),
                                      first_extra_dilation=0, clip_box=100, large_nsigma=2.0,
                                      threshold_noise="pixel")
    tilt = (0.03 * (x + y) / 1200.0).astype(np.float32)
    plain = (masking.tiered_source_mask(image, None, params) & 2) != 0
    tilted = (masking.tiered_source_mask(image + tilt, None, params) & 2) != 0
    assert plain.mean() > 0.05  # the three wide sources are found
    assert tilted.mean() > 0.9 * plain.mean()
