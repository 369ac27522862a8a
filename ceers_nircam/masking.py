"""Masks: DQ flags to excluded pixels, tiered source masks, fast dilations.

One convention throughout: ``True`` means *excluded* (as photutils'
``Background2D`` reads its ``mask``). The tiered source mask is the one the
1/f step writes as ``_rate_1fmask.fits`` and stage 3 reuses for its sky and
background models, so every size in it is a parameter.
"""

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from astropy.stats import sigma_clipped_stats
from scipy import ndimage

from .cli import option


def dq_mask(dq, flags=None):
    """Boolean mask of pixels to exclude: any DQ bit set, or any of ``flags``."""
    dq = np.asarray(dq)
    return dq != 0 if flags is None else (dq & flags) != 0


# --------------------------------------------------------------------------
# footprints and dilation


def disk(radius):
    """Top-hat footprint: offsets with dx^2 + dy^2 <= radius^2."""
    r = int(np.floor(radius))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= radius * radius


def ring(radius, width):
    """Annulus footprint: radius - width/2 <= distance <= radius + width/2."""
    outer = radius + width / 2.0
    r = int(np.floor(outer))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    d = np.hypot(x, y)
    return (d >= radius - width / 2.0) & (d <= outer)


def disk_count(padded, radius):
    """Number of True pixels within ``disk(radius)`` of each pixel.

    ``padded`` is the plane padded by ``floor(radius)`` on every side (with
    whatever boundary rule the caller wants); the result has the unpadded
    shape. A disk is a stack of row segments, so the count is a sum of
    ``2r + 1`` differences of a running sum along rows: exact integers at
    ``O(r)`` per pixel instead of ``O(r^2)``.
    """
    fp = disk(radius)
    r = fp.shape[0] // 2
    h, w = padded.shape[0] - 2 * r, padded.shape[1] - 2 * r
    cums = np.zeros((padded.shape[0], padded.shape[1] + 1), dtype=np.int32)
    np.cumsum(padded, axis=1, dtype=np.int32, out=cums[:, 1:])
    out = np.zeros((h, w), dtype=np.int32)
    for i in range(2 * r + 1):
        half = (int(fp[i].sum()) - 1) // 2
        rows = cums[i:i + h]
        out += rows[:, r + half + 1:r + half + 1 + w]
        out -= rows[:, r - half:r - half + w]
    return out


def dilate_disk(mask, radius):
    """Binary dilation by ``disk(radius)`` (outside the array counts as False).

    Computed from the Euclidean distance to the nearest True pixel, whose
    square is an exact integer, so the result equals
    ``ndimage.binary_dilation(mask, disk(radius))`` at a cost independent of
    the radius.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    dist = ndimage.distance_transform_edt(~mask)
    return np.rint(dist * dist) <= radius * radius + 1e-9


def _running_or(mask, size, axis):
    """OR over a centred window of ``size`` pixels along ``axis`` (outside = False).

    Windows of doubling length are ORed from shifted copies (log2(size)
    passes of cheap boolean ORs), then two of them cover any length exactly.
    """
    m = np.moveaxis(mask, axis, 0)
    n = m.shape[0]
    before = (size - 1) // 2
    padded = np.zeros((n + size - 1,) + m.shape[1:], dtype=bool)
    padded[before:before + n] = m
    acc, width = padded, 1
    while 2 * width <= size:
        nxt = acc.copy()
        nxt[:-width] |= acc[width:]
        acc, width = nxt, 2 * width
    # acc[i] covers [i, i + width); two such windows cover [i, i + size).
    out = acc[:n] | acc[size - width:size - width + n]
    return np.moveaxis(out, 0, axis)


def dilate_square(mask, size):
    """Binary dilation by a ``size`` x ``size`` square: the same as
    ``ndimage.binary_dilation`` with that square, in a few boolean ORs."""
    mask = np.asarray(mask, dtype=bool)
    if size <= 1:
        return mask.copy()
    return _running_or(_running_or(mask, size, 0), size, 1)


def segments(above, min_area, connectivity=8):
    """Connected regions of ``above`` with at least ``min_area`` pixels."""
    if min_area <= 1:
        return np.asarray(above, dtype=bool)
    above = np.asarray(above, dtype=bool)
    structure = np.ones((3, 3), bool) if connectivity == 8 else None
    labels, n = ndimage.label(above, structure=structure)
    out = np.zeros(above.shape, dtype=bool)
    if n == 0:
        return out
    # Counted over the labelled pixels only: a bincount of the whole label image first
    # converts all of it to 64-bit indices, several times the work of the rest.
    inside = labels[above]
    out[above] = (np.bincount(inside, minlength=n + 1) >= min_area)[inside]
    return out


# --------------------------------------------------------------------------
# fast smoothing on a coarse grid


def tier_sources(bits):
    """Pixels some tier of a tiered mask masks (bit 0, the excluded pixels, left out)."""
    return (np.asarray(bits) & np.uint8(0xFE)) != 0


def block_reduce(image, block, func=np.median):
    """``func`` over ``block`` x ``block`` blocks (edges padded by repetition)."""
    ny, nx = image.shape
    by, bx = -(-ny // block), -(-nx // block)
    padded = np.pad(image, ((0, by * block - ny), (0, bx * block - nx)), mode="edge")
    blocks = padded.reshape(by, block, bx, block).transpose(0, 2, 1, 3).reshape(by, bx, -1)
    return func(blocks, axis=-1)


def upsample_axis(small, block, n, axis):
    """Linear interpolation of block centres back to ``n`` pixels along ``axis``.

    Output pixel ``j * block + p`` lies at the same fraction between two
    block centres for every ``j``, so each phase ``p`` is a weighted sum of
    two shifted slices: no per-pixel index arrays. Beyond the first and last
    centres the value is held (as clipping the positions would).
    """
    a = np.moveaxis(np.asarray(small, dtype=np.float32), axis, -1)
    m = a.shape[-1]
    if m == 1:
        return np.moveaxis(np.repeat(a, n, axis=-1), -1, axis)
    phases = np.empty((block,) + a.shape, dtype=np.float32)
    for p, out in enumerate(phases):
        r = (p - (block - 1) / 2.0) / block  # position relative to the own block centre
        if r >= 0:  # between centres j and j + 1
            f = np.float32(r)
            out[..., :-1] = a[..., :-1] * (1 - f) + a[..., 1:] * f
            out[..., -1] = a[..., -1]
        else:  # between centres j - 1 and j
            f = np.float32(1 + r)
            out[..., 1:] = a[..., :-1] * (1 - f) + a[..., 1:] * f
            out[..., 0] = a[..., 0]
    full = np.moveaxis(phases, 0, -1).reshape(a.shape[:-1] + (m * block,))
    if full.shape[-1] < n:
        full = np.concatenate([full, np.repeat(full[..., -1:], n - full.shape[-1], axis=-1)], axis=-1)
    return np.moveaxis(full[..., :n], -1, axis)


def upsample(small, block, shape):
    """Bilinear interpolation of a block grid back to full resolution ``shape``."""
    rows = upsample_axis(small, block, shape[0], 0)
    return np.ascontiguousarray(upsample_axis(rows, block, shape[1], 1))


def gaussian_smooth(image, sigma, max_full=4.0):
    """Gaussian smoothing; wide kernels run on a block-averaged grid.

    A kernel of sigma 25 spans 200 pixels: on the full grid it costs about a
    second per image. Averaging into blocks of about sigma/3 pixels first and
    interpolating back adds a variance of order block^2/4, which is
    negligible next to sigma^2 (under 2% in sigma).
    """
    image = np.asarray(image, dtype=np.float32)
    if sigma <= max_full:
        return ndimage.gaussian_filter(image, sigma, mode="reflect")
    block = max(2, int(sigma // 3))
    small = block_reduce(image, block, np.mean)
    small = ndimage.gaussian_filter(small, sigma / block, mode="reflect")
    return upsample(small, block, image.shape)


def ring_median(image, radius, width, block=8):
    """Median of each pixel's surroundings on a ring: a local background that
    ignores anything smaller than the ring.

    ``block`` > 1 (default) computes it on a grid of block medians with the
    ring scaled down, then interpolates back: a median over 87x87 pixels on
    the full grid takes about 48 s per image, this about 0.1 s. The ring then
    averages over a band ``block`` pixels wide around ``radius`` rather than
    ``width``, which for a background estimate under sources is as good (it
    holds more pixels). ``block=1`` is the plain filter.
    """
    image = np.asarray(image, dtype=np.float32)
    if block <= 1:
        return ndimage.median_filter(image, footprint=ring(radius, width), mode="reflect")
    small = block_reduce(image, block, np.median)
    footprint = ring(radius / block, max(width / block, 1.0))
    small = ndimage.median_filter(small, footprint=footprint, mode="reflect")
    return upsample(small, block, image.shape)


# --------------------------------------------------------------------------
# the tiered source mask


@dataclasses.dataclass(frozen=True)
class SourceMaskParams:
    """Parameters of the tiered source mask (defaults: the stage-1 1/f mask)."""

    ring_radius: float = option(40.0, "radius (pixels) of the ring median background")
    ring_width: float = option(3.0, "width (pixels) of the ring")
    ring_block: int = option(8, "block size of the fast ring median (1: plain filter, slow)")
    smooth_sigmas: tuple = option((25.0, 15.0, 5.0, 2.0), "Gaussian sigma of each tier",
                                  nargs="+", type=float)
    nsigmas: tuple = option((3.0, 3.0, 3.0, 3.0), "detection threshold of each tier (sigma)",
                            nargs="+", type=float)
    min_areas: tuple = option((15, 15, 5, 3), "minimum segment area of each tier (pixels)",
                              nargs="+", type=int)
    dilations: tuple = option((11, 11, 11, 3), "square dilation of each tier (pixels)",
                              nargs="+", type=int)
    first_extra_dilation: int = option(11, "further square dilation of the first tier")
    clip_box: int = option(0, "clip the image at clip_nsigma above a Background2D of this box "
                              "before the ring median (0: no clipping)")
    clip_nsigma: float = option(5.0, "clipping level above the coarse background (sigma)")
    large_nsigma: float = option(2.0, "with clipping: also mask where the image smoothed over half "
                                      "the ring radius stands this many pixel sigma above the sky "
                                      "around it, the bodies of sources wider than the ring (0: off)")
    stats_stride: int = option(3, "take every n-th row and column for the tier thresholds "
                                      "(the smoothed images are correlated over many pixels)")
    threshold_noise: str = option("smoothed", "what nsigmas count: the clipped standard deviation "
                                              "of each tier's smoothed image ('smoothed', the 1/f "
                                              "mask's) or of the unsmoothed pixels ('pixel', the "
                                              "mosaics')", choices=("smoothed", "pixel"))

    def __post_init__(self):
        n = len(self.smooth_sigmas)
        for name in ("nsigmas", "min_areas", "dilations"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs {n} values, one per tier")
        if n > 7:
            raise ValueError("at most 7 tiers fit in the 8-bit mask")


def _clip_bright(image, excluded, params):
    """Clip pixels far above a coarse background so bright sources do not pull
    the ring median up (the stage-3 variant).

    The background and its RMS only need to be rough: they are measured on
    every other row and column (boxes of half the size), a quarter of the
    work, and interpolated linearly.
    """
    from .background import background2d

    box = max(params.clip_box // 2, 2)
    bkg, rms = background2d(image[::2, ::2], excluded[::2, ::2], box=box, filter_size=3,
                            interpolation="bilinear")
    shape = ((image.shape[0] + 1) // 2 * 2, (image.shape[1] + 1) // 2 * 2)
    level = upsample_axis(upsample_axis(bkg + np.float32(params.clip_nsigma) * rms, 2, shape[0], 0),
                           2, shape[1], 1)[:image.shape[0], :image.shape[1]]
    return np.minimum(image, level)


LARGE_RING = 3.0  # ring radius (in units of the mask's ring) of the sky around a large source


def _large_sources(image, bad, params, step):
    """Bodies of sources wider than the ring: where the image smoothed over half the ring
    radius stands ``large_nsigma`` pixel sigma above the sky around it (the median on a
    ring three times as wide).

    Clipping flattens such a source to the coarse background and the ring
    median then takes its core for sky, so the tiers leave the core of a big
    bright galaxy or star unmasked inside a masked ring.
    """
    smooth = gaussian_smooth(image, params.ring_radius / 2.0)
    # The pixel noise about the smoothed image: a sky gradient would widen the image's own
    # spread, raise the threshold and make the mask depend on the gradient.
    _, _, noise = sigma_clipped_stats((image - smooth)[::step, ::step][~bad[::step, ::step]],
                                      sigma=3.0, maxiters=5)
    # The sky around, on a ring far outside the source: a smooth sky gradient cancels.
    around = ring_median(smooth, LARGE_RING * params.ring_radius, params.ring_width,
                         params.ring_block)
    return dilate_square(smooth - around > params.large_nsigma * noise, params.dilations[0]) & ~bad


def tiered_source_mask(image, excluded=None, params=SourceMaskParams()):
    """Tiered source mask of an image.

    Returns a uint8 bitmask: bit 0 = ``excluded`` (flagged or off-detector)
    pixels, bit k (k = 1...) = pixels the k-th tier masks. Excluded and NaN
    pixels are filled with a robust background; a ring median removes the
    local background; each tier smooths the residual with its Gaussian,
    thresholds at the clipped median plus ``nsigma`` clipped standard
    deviations of what earlier tiers left unmasked (of the smoothed image,
    or with ``threshold_noise="pixel"`` of the unsmoothed pixels: then a
    wide tier finds only extended light brighter than ``nsigma`` times the
    pixel noise, however faint its noise after smoothing), keeps segments of at
    least ``min_area`` pixels and grows them by a square. Wide tiers catch
    the faint extended wings of bright galaxies, narrow ones faint compact
    sources.
    """
    from .background import robust_level

    img = np.array(image, dtype=np.float32)
    bad = ~np.isfinite(img)
    if excluded is not None:
        bad |= np.asarray(excluded, dtype=bool)
    bits = bad.astype(np.uint8)
    if bad.all():
        return bits
    img[bad] = robust_level(img[::4, ::4][~bad[::4, ::4]])
    large = None
    if params.clip_box:
        if params.large_nsigma:
            large = _large_sources(img, bad, params, params.stats_stride)
        img = _clip_bright(img, bad, params)
    resid = img - ring_median(img, params.ring_radius, params.ring_width, params.ring_block)
    masked = bad.copy()
    step = params.stats_stride
    pixel_std = None
    if params.threshold_noise == "pixel":
        _, _, pixel_std = sigma_clipped_stats(resid[::step, ::step][~bad[::step, ::step]],
                                              sigma=3.0, maxiters=5)
    tiers = list(zip(params.smooth_sigmas, params.nsigmas, params.min_areas, params.dilations))
    # The smoothing of the next tier needs only ``resid``: it runs in a second thread while
    # this tier is thresholded (numpy and scipy release the GIL for both).
    with ThreadPoolExecutor(max_workers=1) as ahead:
        pending = ahead.submit(gaussian_smooth, resid, tiers[0][0])
        for k, (sigma, nsigma, min_area, grow) in enumerate(tiers, start=1):
            smooth = pending.result()
            if k < len(tiers):
                pending = ahead.submit(gaussian_smooth, resid, tiers[k][0])
            sample = smooth[::step, ::step][~masked[::step, ::step]]
            if sample.size < 10:
                break
            _, median, std = sigma_clipped_stats(sample, sigma=3.0, maxiters=5)
            std = pixel_std if pixel_std is not None else std
            found = segments(smooth > median + nsigma * std, min_area)
            del smooth
            found = dilate_square(found, grow)
            if k == 1:
                found = dilate_square(found, params.first_extra_dilation)
            bits |= found.view(np.uint8) << np.uint8(k)
            masked |= found
    if large is not None:
        bits[large] |= np.uint8(1 << 1)
    return bits

