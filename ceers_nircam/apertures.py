"""Noise in empty apertures against what a mosaic's ERR map predicts.

ERR holds each mosaic pixel's own variance. The noise of a sum over an
aperture is more than the quadrature sum of ERR when neighbouring pixels
are correlated, and mosaic pixels are: the 1/f readout noise that no row
median removes correlates pixels along the detector rows, and the drizzle
spreads each input pixel over several output pixels (long-wave pixels are
twice the mosaic's). How much more depends on the aperture's size, so the
correction is measured as a curve: robust scatter of aperture sums laid on
empty sky, over the median quadrature sum of ERR in them, at several radii.
"""

import dataclasses

import numpy as np

# Pixels kept free of masked ones around each aperture: a source's edge just
# outside the mask must not reach into the sum.
MARGIN = 2


@dataclasses.dataclass(frozen=True)
class ApertureNoise:
    """Empty apertures of one radius: how many, the robust scatter of their sums, and the
    median noise ERR predicts for them (sqrt of the sum of ERR squared)."""

    radius: float
    count: int
    measured: float
    predicted: float

    @property
    def ratio(self):
        """Measured over predicted noise (NaN without apertures or without a prediction)."""
        return self.measured / self.predicted if self.count and self.predicted > 0 else float("nan")


def disk_offsets(radius):
    """(dy, dx) of the pixels whose centres lie within ``radius`` of an aperture's centre."""
    size = int(np.ceil(radius))
    yy, xx = np.mgrid[-size:size + 1, -size:size + 1]
    inside = np.hypot(yy, xx) <= radius
    return yy[inside], xx[inside]


def empty_centres(excluded, radius, margin=MARGIN):
    """Centres (y, x) of apertures on a regular grid of touching boxes of side
    2 (ceil(radius) + margin) + 1, kept where the whole box is free of ``excluded``."""
    half = int(np.ceil(radius)) + margin
    side = 2 * half + 1
    ny, nx = excluded.shape
    by, bx = ny // side, nx // side
    if by == 0 or bx == 0:
        return np.zeros(0, int), np.zeros(0, int)
    boxes = excluded[:by * side, :bx * side].reshape(by, side, bx, side)
    free = ~boxes.any(axis=(1, 3))
    iy, ix = np.nonzero(free)
    return iy * side + half, ix * side + half


def aperture_noise(image, err, excluded, radius, max_apertures=20000):
    """Noise of aperture sums of ``radius`` pixels on empty sky, against ERR's prediction.

    ``image`` must have its sky removed; ``excluded`` marks sources and pixels
    without data. The scatter is 1.4826 times the median absolute deviation,
    which the few apertures holding an undetected source hardly move. Beyond
    ``max_apertures`` a regular subset of the empty ones is used.
    Returns an :class:`ApertureNoise`.
    """
    image = np.asarray(image)
    err = np.asarray(err)
    bad = np.asarray(excluded, dtype=bool) | ~np.isfinite(image) | ~np.isfinite(err)
    yc, xc = empty_centres(bad, radius)
    if yc.size > max_apertures:
        keep = np.linspace(0, yc.size - 1, max_apertures).astype(int)
        yc, xc = yc[keep], xc[keep]
    if yc.size < 2:
        return ApertureNoise(float(radius), 0, float("nan"), float("nan"))
    dy, dx = disk_offsets(radius)
    rows, cols = yc[:, None] + dy, xc[:, None] + dx
    sums = image[rows, cols].sum(axis=1, dtype=np.float64)
    predicted = np.sqrt((err[rows, cols].astype(np.float64) ** 2).sum(axis=1))
    measured = 1.4826 * np.median(np.abs(sums - np.median(sums)))
    return ApertureNoise(float(radius), int(yc.size), float(measured), float(np.median(predicted)))


def noise_curve(image, err, excluded, radii, max_apertures=20000):
    """:func:`aperture_noise` at each of ``radii``."""
    return [aperture_noise(image, err, excluded, r, max_apertures) for r in radii]


def curve_hdu(curve, name="APERNOISE"):
    """The curve as a FITS table: RADIUS (pixels), NAPER, NOISE, ERRNOISE, RATIO."""
    from astropy.io import fits

    columns = [fits.Column(name="RADIUS", format="E", unit="pixel",
                           array=[c.radius for c in curve]),
               fits.Column(name="NAPER", format="J", array=[c.count for c in curve]),
               fits.Column(name="NOISE", format="E", array=[c.measured for c in curve]),
               fits.Column(name="ERRNOISE", format="E", array=[c.predicted for c in curve]),
               fits.Column(name="RATIO", format="E", array=[c.ratio for c in curve])]
    hdu = fits.BinTableHDU.from_columns(columns, name=name)
    hdu.header["COMMENT"] = ("Noise of aperture sums on empty sky (NOISE) over the quadrature "
                             "sum of ERR (ERRNOISE): multiply ERR's prediction by RATIO.")
    return hdu


def rescaled(curve, factor):
    """The curve for ERR multiplied by ``factor``: each prediction times ``factor``."""
    return [dataclasses.replace(c, predicted=c.predicted * factor) for c in curve]


def ratio_at(curve, radius):
    """RATIO of a curve at ``radius``, interpolated linearly in radius (the nearest end
    beyond the radii measured; radii without apertures are left out). ``curve`` is an
    APERNOISE table or a list of :class:`ApertureNoise`."""
    if isinstance(curve, (list, tuple)):
        radii = np.array([c.radius for c in curve], dtype=float)
        ratios = np.array([c.ratio for c in curve], dtype=float)
    else:
        radii = np.asarray(curve["RADIUS"], dtype=float)
        ratios = np.asarray(curve["RATIO"], dtype=float)
    good = np.isfinite(ratios)
    if not good.any():
        return float("nan")
    order = np.argsort(radii[good])
    return float(np.interp(radius, radii[good][order], ratios[good][order]))
