"""Sky levels: sigma-clipped statistics, the pedestal histogram fit, Background2D.

Shared by the 1/f step (pedestal, clipped row and column medians) and stage
3 (sky pedestal, 2D background models). The offline validator's
``measure_sky`` is a sigma-clipped sky outside source stamps, i.e.
:func:`sky_level` with a truth-based mask.
"""

import warnings

import numpy as np
from astropy.stats import SigmaClip, biweight_location, sigma_clipped_stats

from .cli import get_logger

log = get_logger("background")


def robust_level(values, max_values=500_000):
    """Biweight location of ``values`` (a regular subsample of large inputs)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan
    if values.size > max_values:
        values = values[:: values.size // max_values + 1]
    return float(biweight_location(values))


def sky_level(image, excluded=None, sigma=3.0, maxiters=10):
    """Sigma-clipped median of the finite, not excluded pixels."""
    good = np.isfinite(image)
    if excluded is not None:
        good &= ~excluded
    _, median, _ = sigma_clipped_stats(image[good], sigma=sigma, maxiters=maxiters)
    return float(median)


class _SortedRows:
    """Rows sorted once, with what clipping needs for all rows at once: order
    statistics, run sums, and counts below thresholds (a binary search run on
    every row together)."""

    def __init__(self, values, excluded, with_sums):
        ncol = values.shape[-1]
        good = ~np.ascontiguousarray(excluded, dtype=bool) & np.isfinite(values)
        data = np.where(good, values, np.inf).astype(np.float32).reshape(-1, ncol)
        data.sort(axis=1)
        self.data, self.ncol = data, ncol
        self.rows = np.arange(data.shape[0])
        self.count = good.reshape(-1, ncol).sum(axis=1)
        self.sums = None
        if with_sums:
            clean = np.where(np.isfinite(data), data, 0.0).astype(np.float64)
            self.sums = [np.zeros((data.shape[0], ncol + 1)) for _ in range(2)]
            np.cumsum(clean, axis=1, out=self.sums[0][:, 1:])
            np.cumsum(clean * clean, axis=1, out=self.sums[1][:, 1:])

    def at(self, index):
        return self.data[self.rows, np.clip(index, 0, self.ncol - 1)].astype(np.float64)

    def median(self, lo, hi):
        n = hi - lo
        return np.where(n > 0, 0.5 * (self.at(lo + (n - 1) // 2) + self.at(lo + n // 2)), np.nan)

    def percentile_sigma(self, lo, hi):
        n = np.maximum(hi - lo, 1)
        return 0.5 * (self.at(lo + np.ceil(0.84134 * (n - 1)).astype(np.int64))
                      - self.at(lo + np.floor(0.15866 * (n - 1)).astype(np.int64)))

    def mean_std(self, lo, hi):
        n = np.maximum(hi - lo, 1)
        if self.sums is None:
            idx = np.arange(self.ncol)
            inside = (idx >= lo[:, None]) & (idx < hi[:, None])
            return np.where(inside, self.data, np.float32(0)).sum(axis=1, dtype=np.float64) / n, None
        s1, s2 = (s[self.rows, hi] - s[self.rows, lo] for s in self.sums)
        mean = s1 / n
        return mean, np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))

    def below(self, threshold, lo, hi, inclusive):
        """Index, within [lo, hi] of each row, of its first value >= (or > if
        ``inclusive``) the row's threshold."""
        lo, hi = lo.copy(), hi.copy()
        t = np.asarray(threshold, dtype=np.float64)
        while np.any(lo < hi):
            mid = (lo + hi) // 2
            v = self.at(mid)
            go_right = ((v <= t) if inclusive else (v < t)) & (lo < hi)
            lo = np.where(go_right, mid + 1, lo)
            hi = np.where(go_right | (lo >= hi), hi, mid)
        return lo


def clipped_stats(values, excluded, sigma=2.0, maxiters=5, stdfunc="std"):
    """Sigma-clipped mean, median and standard deviation along the last axis.

    Excluded and non-finite values are ignored. With ``stdfunc="std"`` the
    result is astropy's ``sigma_clipped_stats`` (median centre, standard
    deviation, symmetric ``sigma``, cumulative clipping) for every row at
    once, in float32 precision. Each row is sorted once; what clipping keeps
    is then always a contiguous run of the sorted row, whose ends a binary
    search finds for all rows together, so an iteration costs
    O(rows x log(columns)).

    Iterated 2-sigma clipping with the standard deviation shrinks the
    sample at every pass (a clipped Gaussian is narrower than the Gaussian):
    after 5 passes its median is a third noisier than a plain median.
    ``stdfunc="robust"`` takes sigma from the 16th-84th percentile range of
    the kept run instead, which clipping hardly narrows, so about 90% of a
    Gaussian sample stays. Returns (mean, median, std), std being the
    percentile sigma for "robust"; NaN for rows with no usable value.
    """
    values = np.ascontiguousarray(values)
    shape = values.shape[:-1]
    good_rows = (~np.asarray(excluded, dtype=bool) & np.isfinite(values)).any(axis=-1)
    if not good_rows.any():
        return tuple(np.full(shape, np.nan) for _ in range(3))
    rows = _SortedRows(values, excluded, with_sums=stdfunc != "robust")
    with np.errstate(invalid="ignore"):  # rows with nothing usable give inf - inf
        lo, hi = np.zeros(rows.count.size, dtype=np.int64), rows.count.astype(np.int64)
        med = rows.median(lo, hi)
        for _ in range(maxiters):
            std = rows.percentile_sigma(lo, hi) if stdfunc == "robust" else rows.mean_std(lo, hi)[1]
            # Clipping is cumulative (as in astropy): a value once clipped stays out.
            new_lo = rows.below(med - sigma * std, lo, hi, inclusive=False)
            new_hi = rows.below(med + sigma * std, new_lo, hi, inclusive=True)
            if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
                break
            lo, hi = new_lo, new_hi
            med = rows.median(lo, hi)
        mean, std = rows.mean_std(lo, hi)
        if std is None:
            std = rows.percentile_sigma(lo, hi)
        empty = hi <= lo
        return tuple(np.where(empty, np.nan, a).reshape(shape) for a in (mean, med, std))


def clipped_median(values, excluded, sigma=2.0, maxiters=5, stdfunc="std"):
    """Sigma-clipped median along the last axis (see :func:`clipped_stats`)."""
    return clipped_stats(values, excluded, sigma, maxiters, stdfunc)[1]


def _gaussian(x, amp, mu, sigma):
    return amp * np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def pedestal(values, lo=-1.0, hi=1.5, binsize=0.001, fit_halfwidth=None):
    """Sky pedestal: the peak of a Gaussian fitted to the histogram of ``values``.

    Bins of ``binsize`` from ``lo`` to ``hi``. With ``fit_halfwidth`` (in
    units of the histogram's half-maximum width) only the bins around the
    peak are fitted, so that faint unmasked sources in the positive tail do
    not pull the centre. Falls back to the median (and says so) when the fit
    fails or its peak lies outside the histogram. Returns (value, method).
    """
    from scipy.optimize import curve_fit

    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, "none"
    nbins = int(round((hi - lo) / binsize))
    idx = np.floor((values - lo) / binsize).astype(np.int64)
    idx = idx[(idx >= 0) & (idx < nbins)]
    counts = np.bincount(idx, minlength=nbins).astype(np.float64)
    centres = lo + (np.arange(nbins) + 0.5) * binsize
    median = float(np.median(values))
    if counts.sum() < 10:
        log.warning("Pedestal: too few pixels in the histogram range; using the median")
        return median, "median"
    peak = int(np.argmax(counts))
    above = np.flatnonzero(counts >= counts[peak] / 2)
    width = max((above.max() - above.min() + 1) * binsize, binsize)
    use = slice(None)
    if fit_halfwidth is not None:
        half = max(int(np.ceil(fit_halfwidth * width / binsize)), 3)
        use = slice(max(peak - half, 0), min(peak + half + 1, nbins))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, _ = curve_fit(_gaussian, centres[use], counts[use],
                                p0=(counts[peak], centres[peak], width / 2.355))
    except (RuntimeError, ValueError) as err:
        log.warning("Pedestal: Gaussian fit failed (%s); using the median", err)
        return median, "median"
    mu = float(popt[1])
    if not (np.isfinite(mu) and lo <= mu <= hi and popt[0] > 0):
        log.warning("Pedestal: Gaussian fit diverged; using the median")
        return median, "median"
    return mu, "gaussian"


def background2d(image, excluded=None, box=256, filter_size=3, sigma=3.0, estimator="median",
                 exclude_percentile=10.0, interpolation="zoom"):
    """photutils Background2D model and RMS of an image (excluded pixels ignored).

    ``estimator`` is "median" (SExtractor-like default) or "biweight".
    ``interpolation`` "zoom" is photutils' spline (about half a second per
    full-frame map); "bilinear" interpolates the box centres linearly, ten
    times faster, for masks that only need a rough background. Returns
    (background, background_rms) as float32 arrays.
    """
    from photutils.background import (Background2D, BiweightLocationBackground,
                                      MedianBackground)

    from .masking import upsample

    est = BiweightLocationBackground() if estimator == "biweight" else MedianBackground()
    mask = ~np.isfinite(image)
    if excluded is not None:
        mask |= excluded
    bkg = Background2D(np.asarray(image, dtype=np.float32), box, mask=mask,
                       filter_size=filter_size, sigma_clip=SigmaClip(sigma=sigma),
                       bkg_estimator=est, exclude_percentile=exclude_percentile)
    if interpolation == "bilinear" and image.shape[0] % box == 0 and image.shape[1] % box == 0:
        return (upsample(bkg.background_mesh, box, image.shape),
                upsample(bkg.background_rms_mesh, box, image.shape))
    return bkg.background.astype(np.float32), bkg.background_rms.astype(np.float32)
