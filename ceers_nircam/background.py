"""Sky levels: sigma-clipped statistics, the pedestal histogram fit, Background2D.

Shared by the 1/f step (pedestal, clipped row and column medians) and stage
3 (sky pedestal, 2D background models). The offline validator's
``measure_sky`` is a sigma-clipped sky outside source stamps, i.e.
:func:`sky_level` with a truth-based mask.
"""

import dataclasses
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
        values = np.asarray(values)
        ncol = values.shape[-1]
        excluded = np.asarray(excluded, dtype=bool)
        # Excluded values become +inf, and NaN sorts after +inf: every unusable value ends
        # up after the usable ones of its row. One pass whatever the layout (columns come
        # transposed, which np.where would keep).
        if values.flags.c_contiguous and excluded.flags.c_contiguous:
            data = np.where(excluded, np.float32(np.inf), values).astype(np.float32, copy=False)
        else:
            data = np.full(values.shape, np.inf, dtype=np.float32)
            np.copyto(data, values, casting="unsafe", where=~excluded)
        data = data.reshape(-1, ncol)
        data.sort(axis=1)
        negative = np.isneginf(data[:, 0])
        if negative.any():  # -inf sorts first: move it to the end too
            rows = data[negative]
            rows[np.isneginf(rows)] = np.inf
            rows.sort(axis=1)
            data[negative] = rows
        self.data, self.ncol = data, ncol
        self.flat = data.reshape(-1)
        self.rows = np.arange(data.shape[0])
        self.start = self.rows * ncol
        nrow = data.shape[0]
        self.count = self.below(np.full(nrow, np.inf), np.zeros(nrow, np.int64),
                                np.full(nrow, ncol, np.int64), inclusive=False)
        self.sums = None
        if with_sums:
            clean = np.where(np.isfinite(data), data, 0.0).astype(np.float64)
            self.sums = [np.zeros((data.shape[0], ncol + 1)) for _ in range(2)]
            np.cumsum(clean, axis=1, out=self.sums[0][:, 1:])
            np.cumsum(clean * clean, axis=1, out=self.sums[1][:, 1:])

    def select(self, rows):
        """The same sorted rows, with the methods below working on ``rows`` only."""
        view = object.__new__(_SortedRows)
        view.__dict__.update(self.__dict__, rows=rows, start=rows * self.ncol)
        return view

    def at(self, index):
        return self.flat.take(self.start + np.minimum(np.maximum(index, 0), self.ncol - 1)
                              ).astype(np.float64)

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
            return self._run_sums(lo, hi) / n, None
        s1, s2 = (s[self.rows, hi] - s[self.rows, lo] for s in self.sums)
        mean = s1 / n
        return mean, np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))

    def _run_sums(self, lo, hi):
        """Sum (float64) of each row's values in [lo, hi)."""
        if self.rows.size == 0:
            return np.zeros(0)
        # One pass of np.add.reduceat over the flat data, between the run ends
        # [start + lo, start + hi) of each row in turn (rows ascending; the gaps between
        # runs are summed too, and dropped). reduceat takes no end index, so the last row
        # goes apart.
        start = self.start
        bounds = np.column_stack([start + lo, start + hi]).ravel()[:-1]
        with np.errstate(invalid="ignore", over="ignore"):
            sums = np.add.reduceat(self.flat, np.minimum(bounds, self.flat.size - 1),
                                   dtype=np.float64)[::2]
        sums[lo >= hi] = 0.0
        sums[-1] = self.flat[start[-1] + lo[-1]:start[-1] + hi[-1]].sum(dtype=np.float64)
        return sums

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


def _clip_runs(values, excluded, sigma, maxiters, stdfunc):
    """Sorted rows and the run ``[lo, hi)`` of each that iterated clipping keeps
    (see :func:`clipped_stats`); also the final medians.

    A row whose run did not change in an iteration never changes again, so
    each iteration works on the rows that changed in the last one only.
    """
    rows = _SortedRows(values, excluded, with_sums=stdfunc != "robust")
    with np.errstate(invalid="ignore"):  # rows with nothing usable give inf - inf
        lo, hi = np.zeros(rows.count.size, dtype=np.int64), rows.count.astype(np.int64)
        med = rows.median(lo, hi)
        active = rows.rows
        for _ in range(maxiters):
            part = rows.select(active)
            a_lo, a_hi, a_med = lo[active], hi[active], med[active]
            std = part.percentile_sigma(a_lo, a_hi) if stdfunc == "robust" else part.mean_std(a_lo, a_hi)[1]
            # Clipping is cumulative (as in astropy): a value once clipped stays out.
            new_lo = part.below(a_med - sigma * std, a_lo, a_hi, inclusive=False)
            new_hi = part.below(a_med + sigma * std, new_lo, a_hi, inclusive=True)
            changed = (new_lo != a_lo) | (new_hi != a_hi)
            if not changed.any():
                break
            active = active[changed]
            lo[active], hi[active] = new_lo[changed], new_hi[changed]
            med[active] = rows.select(active).median(lo[active], hi[active])
    return rows, lo, hi, med


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
    shape = np.shape(values)[:-1]
    if np.size(values) == 0:
        return tuple(np.full(shape, np.nan) for _ in range(3))
    rows, lo, hi, med = _clip_runs(values, excluded, sigma, maxiters, stdfunc)
    with np.errstate(invalid="ignore"):
        mean, std = rows.mean_std(lo, hi)
        if std is None:
            std = rows.percentile_sigma(lo, hi)
        empty = hi <= lo
        return tuple(np.where(empty, np.nan, a).reshape(shape) for a in (mean, med, std))


def clipped_median(values, excluded, sigma=2.0, maxiters=5, stdfunc="std"):
    """Sigma-clipped median along the last axis (see :func:`clipped_stats`)."""
    return clipped_stats(values, excluded, sigma, maxiters, stdfunc)[1]


def gaussian(x, amp, mu, sigma):
    """The curve :func:`pedestal_fit` fits to the histogram."""
    return amp * np.exp(-0.5 * ((x - mu) / sigma) ** 2)


@dataclasses.dataclass
class PedestalFit:
    """A pedestal and how it was found: the histogram and, for a fit, the Gaussian's
    amplitude, centre and sigma and the bins fitted."""

    value: float
    method: str  # "gaussian", "median" (the fit failed) or "none" (no values)
    centres: np.ndarray = None
    counts: np.ndarray = None
    popt: tuple = None
    fitted: slice = dataclasses.field(default_factory=lambda: slice(None))


def pedestal_fit(values, lo=-1.0, hi=1.5, binsize=0.001, fit_halfwidth=None):
    """Sky pedestal: the peak of a Gaussian fitted to the histogram of ``values``.

    Bins of ``binsize`` from ``lo`` to ``hi``. With ``fit_halfwidth`` (in
    units of the histogram's half-maximum width) only the bins around the
    peak are fitted, so that faint unmasked sources in the positive tail do
    not pull the centre. Falls back to the median (and says so) when the fit
    fails or its peak lies outside the histogram. Returns a :class:`PedestalFit`.
    """
    from scipy.optimize import curve_fit

    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return PedestalFit(np.nan, "none")
    nbins = int(round((hi - lo) / binsize))
    idx = np.floor((values - lo) / binsize).astype(np.int64)
    idx = idx[(idx >= 0) & (idx < nbins)]
    counts = np.bincount(idx, minlength=nbins).astype(np.float64)
    centres = lo + (np.arange(nbins) + 0.5) * binsize

    def median():
        return PedestalFit(float(np.median(values)), "median", centres, counts)

    if counts.sum() < 10:
        log.warning("Pedestal: too few pixels in the histogram range; using the median")
        return median()
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
            popt, _ = curve_fit(gaussian, centres[use], counts[use],
                                p0=(counts[peak], centres[peak], width / 2.355))
    except (RuntimeError, ValueError) as err:
        log.warning("Pedestal: Gaussian fit failed (%s); using the median", err)
        return median()
    mu = float(popt[1])
    if not (np.isfinite(mu) and lo <= mu <= hi and popt[0] > 0):
        log.warning("Pedestal: Gaussian fit diverged; using the median")
        return median()
    return PedestalFit(mu, "gaussian", centres, counts, tuple(float(p) for p in popt), use)


def pedestal(values, lo=-1.0, hi=1.5, binsize=0.001, fit_halfwidth=None):
    """(value, method) of :func:`pedestal_fit`."""
    fit = pedestal_fit(values, lo, hi, binsize, fit_halfwidth)
    return fit.value, fit.method


def _run_biweight(rows, lo, hi, c=6.0):
    """Biweight location (astropy's: M = median, tuning constant ``c``) of the
    run ``[lo, hi)`` of every sorted row."""
    data = rows.data
    inside = np.arange(rows.ncol)[None, :]
    inside = (inside >= lo[:, None]) & (inside < hi[:, None])
    n = hi - lo
    with np.errstate(invalid="ignore"):
        med = rows.median(lo, hi)
        d = np.where(inside, data - med[:, None].astype(np.float32), np.float32(0))
        absd = np.where(inside, np.abs(d), np.float32(np.inf))
        absd.sort(axis=1)
        r = rows.rows
        mad = 0.5 * (absd[r, np.clip((n - 1) // 2, 0, rows.ncol - 1)].astype(np.float64)
                     + absd[r, np.clip(n // 2, 0, rows.ncol - 1)])
        del absd
        u = d / (c * mad[:, None]).astype(np.float32)
        w = np.where(inside & (np.abs(u) < 1), (1 - u * u) ** 2, np.float32(0))
        num = np.sum(w * d, axis=1, dtype=np.float64)
        den = np.sum(w, axis=1, dtype=np.float64)
        loc = med + num / den
    return np.where((mad > 0) & (den > 0), loc, med)


def _boxes(image, excluded, box, y0, y1):
    """Box rows ``y0:y1`` of an image as (nboxes, box*box) values and exclusions
    (edges padded with excluded pixels)."""
    ny, nx = image.shape
    nbx = -(-nx // box)
    sub = image[y0 * box:min(y1 * box, ny)]
    ex = excluded[y0 * box:min(y1 * box, ny)]
    pad = ((0, (y1 - y0) * box - sub.shape[0]), (0, nbx * box - nx))
    sub = np.pad(sub, pad, constant_values=np.nan)
    ex = np.pad(ex, pad, constant_values=True) | ~np.isfinite(sub)

    def blocks(a):
        return a.reshape(y1 - y0, box, nbx, box).transpose(0, 2, 1, 3).reshape(-1, box * box)

    return blocks(sub), blocks(ex)


def mesh_statistics(image, excluded, box, sigma=3.0, maxiters=5, estimator="median",
                    chunk_pixels=8_000_000):
    """Sigma-clipped background and RMS of every ``box`` x ``box`` box of an image.

    Per box: astropy-style clipping (median centre, standard deviation,
    ``sigma``, ``maxiters``) of the finite, not excluded pixels, then the
    median, biweight location or mean of what is kept, and its standard
    deviation. Boxes are processed a band of rows at a time (at most
    ``chunk_pixels`` pixels), so a 50-Mpixel mosaic needs a few hundred MB.
    Returns (background mesh, rms mesh, number of pixels kept).
    """
    ny, nx = image.shape
    nby, nbx = -(-ny // box), -(-nx // box)
    bkg = np.full((nby, nbx), np.nan)
    rms = np.full((nby, nbx), np.nan)
    ngood = np.zeros((nby, nbx), dtype=np.int64)
    step = max(1, chunk_pixels // (box * box * nbx))
    for y0 in range(0, nby, step):
        y1 = min(y0 + step, nby)
        values, ex = _boxes(image, excluded, box, y0, y1)
        usable = ~ex.all(axis=1)
        if not usable.any():
            continue
        rows, lo, hi, med = _clip_runs(values[usable], ex[usable], sigma, maxiters, "std")
        with np.errstate(invalid="ignore"):
            mean, std = rows.mean_std(lo, hi)
        if estimator == "biweight":
            level = _run_biweight(rows, lo, hi)
        elif estimator == "mean":
            level = mean
        else:
            level = med
        for out, value in ((bkg, level), (rms, std), (ngood, hi - lo)):
            band = out[y0:y1].reshape(-1)
            band[usable] = value
            out[y0:y1] = band.reshape(y1 - y0, nbx)
    return bkg, rms, ngood


def _fill_mesh(mesh, bad):
    """Replace ``bad`` mesh values by inverse-distance weighting of the 10 nearest good
    ones (photutils' rule for boxes it leaves out)."""
    from photutils.utils import ShepardIDWInterpolator

    if not bad.any():
        return mesh
    good = np.column_stack(np.nonzero(~bad))
    interp = ShepardIDWInterpolator(good, mesh[~bad])
    out = mesh.copy()
    out[bad] = interp(np.column_stack(np.nonzero(bad)), n_neighbors=10, power=1.0)
    return out


def _nan_median_filter(mesh, size):
    """Median filter of ``size`` x ``size`` that ignores what lies beyond the edges."""
    if size <= 1:
        return mesh
    ny, nx = mesh.shape
    padded = np.pad(mesh, size // 2, constant_values=np.nan)
    # Each box's neighbourhood along the last axis, sorted (NaN beyond the edges sorts last):
    # the median is then two picks per box, which np.nanmedian's masked sort takes six times
    # as long to reach.
    stack = np.empty((ny, nx, size * size), dtype=mesh.dtype)
    for k in range(size * size):
        i, j = divmod(k, size)
        stack[..., k] = padded[i:i + ny, j:j + nx]
    stack.sort(axis=-1)
    n = np.count_nonzero(~np.isnan(stack), axis=-1)[..., None]
    lo = np.take_along_axis(stack, (n - 1) // 2, -1)[..., 0]
    hi = np.take_along_axis(stack, n // 2, -1)[..., 0]
    return (lo + hi) / 2


def _cubic_bspline(t):
    t = abs(t)
    return 2 / 3 - t * t + t ** 3 / 2 if t < 1 else ((2 - t) ** 3 / 6 if t < 2 else 0.0)


def _zoom_axis(a, box, n_out, axis):
    """``scipy.ndimage.zoom(order=3, mode="reflect", grid_mode=True)`` by an integer
    factor along one axis.

    The output positions repeat with period ``box`` in the input grid, so
    each output phase is four shifted slices of the spline coefficients times
    fixed weights: no per-pixel index arithmetic. Applied along both axes it
    equals the 2D zoom (the tensor-product spline is separable) at a fifth of
    the cost.
    """
    from scipy.ndimage import spline_filter1d

    a = np.moveaxis(np.asarray(a, dtype=np.float32), axis, -1)
    n = a.shape[-1]
    c = spline_filter1d(a, order=3, axis=-1, mode="reflect", output=np.float32)
    # Half-sample symmetric extension by two coefficients on each side: cpad[i + 2] = c[i].
    cpad = np.concatenate([c[..., 1::-1], c, c[..., :-3:-1]], axis=-1)
    phases = np.zeros((box,) + a.shape[:-1] + (n,), dtype=np.float32)
    for phase, acc in enumerate(phases):
        x = (phase + 0.5) / box - 0.5  # input coordinate of this phase, relative to its box
        first = int(np.floor(x)) - 1
        for m in range(4):
            start = first + m + 2
            acc += np.float32(_cubic_bspline(x - (first + m))) * cpad[..., start:start + n]
    # Interleave the phases: output pixel k * box + phase.
    out = np.moveaxis(phases, 0, -1).reshape(a.shape[:-1] + (n * box,))[..., :n_out]
    return np.moveaxis(out, -1, axis)


def expand_mesh(mesh, box, shape, interpolation="zoom"):
    """A mesh of box values back to full resolution: photutils' zoom (cubic spline through
    the box centres, clipped to the mesh's range) or bilinear."""
    from scipy.ndimage import zoom

    from .masking import upsample

    if interpolation == "bilinear":
        return upsample(mesh, box, shape)
    mesh = np.asarray(mesh, dtype=np.float32)
    lo, hi = float(mesh.min()), float(mesh.max())
    if hi == lo:
        return np.full(shape, lo, dtype=np.float32)
    if min(mesh.shape) >= 3:
        full = _zoom_axis(_zoom_axis(mesh, box, shape[0], 0), box, shape[1], 1)
    else:
        full = zoom(mesh, box, order=3, mode="reflect", grid_mode=True,
                    output=np.float32)[:shape[0], :shape[1]]
    np.clip(full, lo, hi, out=full)
    return np.ascontiguousarray(full)


def background2d(image, excluded=None, box=256, filter_size=3, sigma=3.0, estimator="median",
                 exclude_percentile=10.0, interpolation="zoom", engine="fast", want_rms=True):
    """Background2D model and RMS of an image (excluded and non-finite pixels ignored).

    photutils' Background2D algorithm: sigma-clipped statistics in boxes of
    ``box`` pixels (``estimator`` "median", SExtractor-like, or
    "biweight"), boxes with more than ``exclude_percentile`` percent of
    their pixels excluded or clipped replaced by inverse-distance weighting,
    a ``filter_size`` median filter of the box values, and interpolation
    back to full resolution (``interpolation`` "zoom" is photutils' cubic
    spline; "bilinear" is ten times faster, for masks that only need a rough
    background). ``engine="fast"`` computes the box statistics on sorted
    rows (:func:`mesh_statistics`): the same numbers as photutils
    (``engine="photutils"``) in a tenth of the time and a fraction of the
    memory, which full frames at box 5 and 50-Mpixel mosaics need. Returns
    (background, background_rms) as float32 arrays (rms None unless
    ``want_rms``).
    """
    image = np.asarray(image, dtype=np.float32)
    mask = ~np.isfinite(image)
    if excluded is not None:
        mask |= excluded
    if engine == "photutils":
        return _photutils_background2d(image, mask, box, filter_size, sigma, estimator,
                                       exclude_percentile, interpolation)
    bkg, rms, ngood = mesh_statistics(image, mask, box, sigma, 5, estimator)
    bad = ~(ngood > (1 - exclude_percentile / 100.0) * box * box) | ~np.isfinite(bkg)
    if bad.all():
        raise ValueError(f"every {box}x{box} box has more than {exclude_percentile}% of its "
                         "pixels masked")
    meshes = [_nan_median_filter(_fill_mesh(m, bad), filter_size)
              for m in ((bkg, rms) if want_rms else (bkg,))]
    out = [expand_mesh(m, box, image.shape, interpolation) for m in meshes]
    return (out[0], out[1] if want_rms else None)


def _photutils_background2d(image, mask, box, filter_size, sigma, estimator, exclude_percentile,
                            interpolation):
    from photutils.background import (Background2D, BiweightLocationBackground,
                                      MedianBackground)

    from .masking import upsample

    est = BiweightLocationBackground() if estimator == "biweight" else MedianBackground()
    bkg = Background2D(image, box, mask=mask, filter_size=filter_size,
                       sigma_clip=SigmaClip(sigma=sigma), bkg_estimator=est,
                       exclude_percentile=exclude_percentile)
    if interpolation == "bilinear" and image.shape[0] % box == 0 and image.shape[1] % box == 0:
        return (upsample(bkg.background_mesh, box, image.shape),
                upsample(bkg.background_rms_mesh, box, image.shape))
    return bkg.background.astype(np.float32), bkg.background_rms.astype(np.float32)


def _legendre_basis(n, box, degree):
    """Legendre polynomials 0..degree of a coordinate scaled to [-1, 1] over ``n`` pixels,
    at every pixel and at the centres of ``box``-pixel boxes."""
    scale = max(n - 1, 1) / 2.0
    pixels = np.arange(n) / scale - 1.0
    centres = np.minimum(np.arange(-(-n // box)) * box + (box - 1) / 2.0, n - 1) / scale - 1.0
    vander = np.polynomial.legendre.legvander
    return vander(pixels, degree), vander(centres, degree)


def sky_surface(image, excluded=None, degree=2, box=100, sigma=3.0, maxiters=10, stride=2):
    """A low-order polynomial sky surface of an image, robust to its sources.

    The clipped biweight of every ``box`` x ``box`` box (of the pixels not
    ``excluded``) is fitted with a 2D polynomial of total ``degree``,
    rejecting boxes ``sigma`` robust deviations away, until none changes.
    Box levels and the fit both move exactly with a smooth sky added to the
    image, so what is measured after taking the surface out (a source mask,
    a Background2D) no longer depends on a sky gradient: a median filter of
    box values and the mask thresholds do otherwise. ``degree`` 0 returns
    zeros (nothing taken out). Returns a float32 array of the image's shape.
    """
    image = np.asarray(image, dtype=np.float32)
    ny, nx = image.shape
    if degree <= 0:
        return np.zeros(image.shape, dtype=np.float32)
    mask = ~np.isfinite(image)
    if excluded is not None:
        mask |= excluded
    step = stride if stride > 1 and box % stride == 0 else 1
    sub = box // step
    mesh, _, ngood = mesh_statistics(image[::step, ::step], mask[::step, ::step], sub, sigma, 5,
                                     "biweight")
    (ypix, ycen), (xpix, xcen) = _legendre_basis(ny, box, degree), _legendre_basis(nx, box, degree)
    ycen, xcen = ycen[:mesh.shape[0]], xcen[:mesh.shape[1]]
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    good = np.isfinite(mesh) & (ngood >= 0.25 * sub * sub)
    if good.sum() < 2 * len(terms):
        return np.zeros(image.shape, dtype=np.float32)
    design = np.stack([ycen[:, i][:, None] * xcen[:, j][None, :] for i, j in terms], axis=-1)
    use = good.copy()
    for _ in range(maxiters):
        coeffs, *_ = np.linalg.lstsq(design[use], mesh[use], rcond=None)
        resid = mesh - design @ coeffs
        spread = 1.4826 * np.median(np.abs(resid[use] - np.median(resid[use])))
        keep = good & (np.abs(resid) <= sigma * max(spread, 1e-30))
        if np.array_equal(keep, use) or keep.sum() < 2 * len(terms):
            break
        use = keep
    surface = np.zeros(image.shape, dtype=np.float32)
    for i in range(degree + 1):
        along_x = sum(c * xpix[:, j] for (ti, j), c in zip(terms, coeffs) if ti == i)
        surface += ypix[:, i].astype(np.float32)[:, None] * along_x.astype(np.float32)[None, :]
    return surface


@dataclasses.dataclass
class SourceHalo:
    """Light that masked sources spread beyond their mask (:func:`source_halo`)."""

    image: np.ndarray  # float32, the fitted halo light at every pixel
    edges: tuple  # annulus edges (pixels)
    weights: np.ndarray  # one non-negative weight per annulus
    offset: float  # the constant term of the sky polynomial fitted with them


# Ring edges (pixels) of the halo fit on a single exposure: out to the 1/f mask's reach.
EXPOSURE_HALO_EDGES = (0.0, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0)


def halo_entry(halo):
    """History items of a fitted :class:`SourceHalo`: its ring edges and weights (none
    without one)."""
    if halo is None:
        return {}
    return {"halo_edges": ",".join(f"{e:g}" for e in halo.edges),
            "halo_weights": ",".join(f"{w:.4g}" for w in halo.weights)}


def kernel_reach(edges):
    """Half-size (pixels) of the annulus kernels between ``edges``."""
    return int(np.ceil(edges[-1]))


def annulus_kernels(edges):
    """Kernels of the annuli between successive ``edges`` (pixels), each summing to 1."""
    size = kernel_reach(edges)
    yy, xx = np.mgrid[-size:size + 1, -size:size + 1]
    r = np.hypot(yy, xx)
    kernels = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        k = ((r >= lo) & (r < hi)).astype(np.float32)
        kernels.append(k / k.sum())
    return kernels


def remove_group_offsets(values, groups, tol=1e-6, max_sweeps=100):
    """Take out of ``values`` (float64, pixels x columns, changed in place and returned)
    the least-squares fit of one free offset per label of every labelling in ``groups``
    (integer labels per pixel, such as rows and columns).

    Block Gauss-Seidel on the offsets: each labelling's offsets are the group means of
    what the others leave, which needs only the sparse counts of pixels shared by two
    groups rather than a pass over every pixel, and all columns go at once. Sweeps stop
    when no offset moves by more than ``tol`` times its column's root mean square.
    """
    import scipy.sparse as sp

    npix = values.shape[0]
    sizes = [int(g.max()) + 1 if g.size else 1 for g in groups]
    # One indicator matrix per labelling (groups x pixels), a single 1 per pixel.
    members = [sp.csc_matrix((np.ones(npix), g, np.arange(npix + 1)), shape=(n, npix))
               for g, n in zip(groups, sizes)]
    sums = [m @ values for m in members]
    counts = [np.bincount(g, minlength=n)[:, None] for g, n in zip(groups, sizes)]
    shared = {}
    for j in range(len(groups)):
        for k in range(j + 1, len(groups)):
            shared[j, k] = (members[j] @ members[k].T).tocsr()
            shared[k, j] = shared[j, k].T.tocsr()
    spread = np.maximum(np.sqrt(np.einsum("ij,ij->j", values, values) / max(npix, 1)), 1e-300)
    coeffs = [np.zeros((n, values.shape[1])) for n in sizes]
    for _ in range(max_sweeps if len(groups) > 1 else 1):
        moved = 0.0
        for j in range(len(groups)):
            rest = sums[j] - sum(shared[j, k] @ coeffs[k] for k in range(len(groups)) if k != j)
            new = np.divide(rest, counts[j], out=np.zeros_like(rest), where=counts[j] > 0)
            moved = max(moved, float((np.abs(new - coeffs[j]) / spread).max(initial=0.0)))
            coeffs[j] = new
        if moved <= tol:
            break
    for c, g in zip(coeffs, groups):
        values -= c[g]
    return values


def ring_spectra(image_shape, edges, cache=None):
    """(padded shape, Fourier transforms) of the annulus kernels between ``edges`` for
    convolving an image of ``image_shape``; a dict given as ``cache`` keeps them for the
    next call. They do not depend on the image, so they can be made ahead of it."""
    import scipy.fft

    half = kernel_reach(edges)
    # Circular convolution wraps the kernel's reach past the far edge onto the first
    # ``half`` rows and columns of the output, which lie outside the image: ``half`` of
    # padding keeps the image's part exact.
    shape = tuple(scipy.fft.next_fast_len(n + half, real=True) for n in image_shape)
    cache = {} if cache is None else cache
    spectra = []
    for lo, hi, kernel in zip(edges[:-1], edges[1:], annulus_kernels(edges)):
        key = (shape, lo, hi)
        if key not in cache:
            cache[key] = scipy.fft.rfft2(kernel, shape, workers=-1)
        spectra.append(cache[key])
    return shape, spectra


def source_halo(image, sources, usable, sky, smooth_sky, edges=(0, 3, 6, 12, 24, 48, 96, 160),
                stride=11, cache=None, sky_degree=0, offsets=None):
    """Fit the light masked sources spread beyond their mask.

    PSF wings and the outer profiles of galaxies put light far outside any
    source mask; a background measured in small boxes takes it for sky, most
    of all next to bright sources, and oversubtracts there. That light is
    linear in the sources' flux, so it is modelled as the masked flux
    (``image`` - ``sky`` on ``sources``) convolved with a radial kernel:
    non-negative weights of ring kernels between ``edges``, fitted with a
    polynomial of degree ``sky_degree`` to every ``stride``-th unmasked
    ``usable`` pixel of ``image`` - ``smooth_sky`` (a sky surface too smooth
    to follow the halos; the polynomial takes what of the sky it missed,
    such as the halos' own mean light it took for sky). A dict
    given as ``cache`` keeps the rings' Fourier transforms for the next call
    on an image of the same shape. Returns a :class:`SourceHalo`.
    """
    import scipy.fft
    from scipy.optimize import lsq_linear

    image = np.asarray(image, dtype=np.float32)
    inside = np.where(sources & usable, image - sky, np.float32(0)).astype(np.float32)
    inside[~np.isfinite(inside)] = 0
    shape, rings = ring_spectra(image.shape, edges, cache)
    nring = len(rings)
    half = kernel_reach(edges)
    ny, nx = image.shape
    spectrum = scipy.fft.rfft2(inside, shape, workers=-1)
    del inside
    fit_pixels = np.flatnonzero((usable & ~sources).ravel())[::stride]
    target = (image.ravel()[fit_pixels] - smooth_sky.ravel()[fit_pixels]).astype(np.float64)
    good = np.isfinite(target)
    fit_pixels, target = fit_pixels[good], target[good]
    py, px = np.divmod(fit_pixels, nx)
    if offsets is not None:
        # A free offset per group is the same as fitting what is left after the offsets'
        # least-squares fit is taken out of the target and of every ring's column
        # (Frisch-Waugh): :func:`remove_group_offsets`, on all columns at once below.
        sky_degree = -1
        groups = [np.asarray(o).ravel()[fit_pixels] for o in
                  (offsets if isinstance(offsets, (list, tuple)) else [offsets])]
    # The sky the halos sit on: a polynomial of total degree ``sky_degree`` (a constant at 0)
    # fitted with them, as a smooth sky and the halos' widest rings are alike.
    sky_terms = [(i, j) for i in range(sky_degree + 1) for j in range(sky_degree + 1 - i)]
    # The target rides along as the last column, so that the offsets leave both at once.
    columns = np.empty((fit_pixels.size, nring + len(sky_terms) + 1))
    columns[:, -1] = target
    design, target = columns[:, :-1], columns[:, -1]
    if sky_terms:
        legy = np.polynomial.legendre.legvander(py / max(ny - 1, 1) * 2.0 - 1.0, sky_degree)
        legx = np.polynomial.legendre.legvander(px / max(nx - 1, 1) * 2.0 - 1.0, sky_degree)
        for n, (i, j) in enumerate(sky_terms):
            design[:, nring + n] = legy[:, i] * legx[:, j]
        del legy, legx
    at_fit = (py + half) * shape[1] + (px + half)  # the fit pixels in the padded output
    for i, ring in enumerate(rings):
        conv = scipy.fft.irfft2(spectrum * ring, shape, workers=-1, overwrite_x=True)
        design[:, i] = conv.ravel().take(at_fit)
        del conv
    if offsets is not None:
        remove_group_offsets(columns, groups)
    # The bounded least-squares problem through its normal equations: a small square
    # system instead of millions of rows, with the same solution.
    normal = design.T @ design
    scale = np.sqrt(np.maximum(np.diag(normal), 1e-300))
    chol = np.linalg.cholesky(normal / np.outer(scale, scale) + 1e-12 * np.eye(len(scale)))
    rhs = np.linalg.solve(chol, (design.T @ target) / scale)
    lower = np.r_[np.zeros(nring), np.full(len(sky_terms), -np.inf)]
    result = lsq_linear(chol.T, rhs, bounds=(lower * scale, np.inf))
    coeffs = result.x / scale
    weights = coeffs[:nring]
    combined = sum(np.complex64(w) * r for w, r in zip(weights, rings) if w > 0)
    if np.isscalar(combined):
        halo = np.zeros(image.shape, dtype=np.float32)
    else:
        halo = np.ascontiguousarray(
            scipy.fft.irfft2(spectrum * combined, shape, workers=-1,
                             overwrite_x=True)[half:half + ny, half:half + nx],
            dtype=np.float32)
    return SourceHalo(halo, tuple(edges), weights, float(coeffs[nring]) if sky_terms else 0.0)
