"""Wisp subtraction: scattered light from the secondary-mirror struts.

Only NRCA3, NRCA4, NRCB3 and NRCB4 in F150W and F200W have wisps; the
NIRCam team's templates (one per detector and filter) give their shape. The
amplitude varies between exposures, so a template is scaled and
subtracted: by a given scale (DR0.5 used hand-checked scales per image), or
by a fit that minimises the spread of the image minus scale x template in
the detector's wisp region. Sources and flagged pixels are masked for the
fit; the spread is the median absolute deviation, which the remaining faint
sources hardly move.
"""

import dataclasses
import glob
import os
import time

import numpy as np
from astropy.io import fits
from scipy import ndimage

from .. import nircam
from ..cli import CeersError, get_logger, option
from ..masking import dilate_square, dq_mask, segments
from . import Status

log = get_logger("wisps")

TEMPLATE_ENV = "CEERS_WISP_TEMPLATES"
# The NIRCam team's release of 2022-08-26, and STScI's version 3.
TEMPLATE_PATTERNS = ("wisps_{det}_{FILT}.fits", "WISP_{DET}_{FILT}_CLEAR.fits")


@dataclasses.dataclass(frozen=True)
class WispParams:
    """Parameters of the wisp step (defaults: DR0.5)."""

    scale: float | None = option(None, "subtract this multiple of the template")
    fit: bool = option(False, "fit the scale in the detector's wisp region")
    template_dir: str | None = option(None, f"directory of the wisp templates (default: ${TEMPLATE_ENV})")
    plot: bool = option(False, "save a plot of the fit curve as <rate>_wisp.png")
    scale_min: float = option(0.01, "smallest scale tried by the fit")
    scale_max: float = option(1.99, "largest scale tried by the fit (DR0.5: 1.19)")
    scale_step: float = option(0.02, "step of the scales tried")
    fit_halfwidth: float = option(0.2, "fit the parabola to scales within this distance of the "
                                       "best tried one")
    smooth_sigma: float = option(2.0, "Gaussian sigma (pixels) of the template used in the fit")
    seg_box: int = option(256, "Background2D box of the source detection")
    seg_nsigma: float = option(5.5, "source detection threshold (x ERR above the background)")
    seg_npixels: int = option(15, "minimum source area (pixels)")
    seg_grow: int = option(15, "square grown around each source (pixels)")
    method: str = option("mad", "'mad': the scale minimising the median absolute deviation "
                                "(DR0.5); 'lsq': least squares with outliers clipped",
                         choices=("mad", "lsq"))
    clip: float = option(3.0, "lsq: clip residuals beyond this many robust sigma")
    destripe: str = option("none", "how 1/f row stripes are kept out of the fit: 'none' "
                                   "(DR0.5), 'centre' (an offset per amplifier-row fitted with "
                                   "the scale), 'highpass' (the offsets, less their running mean "
                                   "over --row_window rows, removed first)",
                           choices=("none", "centre", "highpass"))
    row_window: int = option(101, "rows of the running mean of the row offsets (highpass)")

    def check(self):
        """One of the two modes must be chosen."""
        if (self.scale is None) == (not self.fit):
            raise CeersError("give either --scale S or --fit")
        if self.scale is not None and not np.isfinite(self.scale):
            raise CeersError(f"--scale must be a number, not {self.scale}")


def applies_to(detector, filt):
    """True for the detectors and filters that have wisps."""
    return detector.upper() in nircam.WISP_DETECTORS and filt.upper() in nircam.WISP_FILTERS


# --------------------------------------------------------------------------
# templates


def template_directory(directory=None):
    """The template directory: as given, else from $CEERS_WISP_TEMPLATES."""
    directory = directory or os.environ.get(TEMPLATE_ENV)
    if not directory:
        raise CeersError(f"no wisp template directory: give --template_dir or set {TEMPLATE_ENV}")
    if not os.path.isdir(directory):
        raise CeersError(f"wisp template directory {directory} does not exist")
    return directory


def find_template(directory, detector, filt):
    """Path of the template of a detector and filter, in either naming."""
    names = [p.format(det=detector.lower(), DET=detector.upper(), FILT=filt.upper())
             for p in TEMPLATE_PATTERNS]
    for name in names:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    # Case-insensitive file systems aside, accept either naming in any case.
    wanted = {n.lower() for n in names}
    for path in sorted(glob.glob(os.path.join(directory, "*.fits"))):
        if os.path.basename(path).lower() in wanted:
            return path
    raise CeersError(f"no wisp template for {detector} {filt} in {directory} "
                     f"(looked for {' or '.join(names)})")


def read_template(path, shape=(nircam.NPIX, nircam.NPIX), region=None):
    """Template image (float32, NaN kept) from the SCI extension or the first image HDU."""
    try:
        with fits.open(path) as hdul:
            hdus = [h for h in hdul if h.name == "SCI"] or [h for h in hdul if h.is_image and h.data is not None]
            data = None if not hdus else np.array(hdus[0].data, dtype=np.float32)
    except (OSError, ValueError) as err:
        raise CeersError(f"{path}: not a readable wisp template ({err})") from None
    if data is None or data.ndim != 2:
        raise CeersError(f"{path}: no 2D image in the wisp template")
    if region is not None and data.shape == (nircam.NPIX, nircam.NPIX) and data.shape != shape:
        data = data[region]
    if data.shape != shape:
        raise CeersError(f"{path}: template shape {data.shape} does not match the image {shape}")
    return data


def load_template(path, model):
    """Template on the pixels of an ImageModel (cut to its subarray)."""
    shape = model.data.shape
    y0, x0 = (model.meta.subarray.ystart or 1) - 1, (model.meta.subarray.xstart or 1) - 1
    region = (slice(y0, y0 + shape[0]), slice(x0, x0 + shape[1]))
    return read_template(path, shape, region)


def clean_template(template, image):
    """Template ready to subtract: NaN -> 0, and 0 wherever the image is exactly 0."""
    out = np.nan_to_num(template, nan=0.0, posinf=0.0, neginf=0.0)
    out[image == 0] = 0.0
    return out


# --------------------------------------------------------------------------
# the fit


def source_mask(image, err, excluded, params=WispParams()):
    """Sources to keep out of the fit: detected at background + nsigma x ERR, grown by a square."""
    from ..background import background2d

    # DQ > 0 includes every pixel with a jump (a tenth of a long exposure): let
    # boxes with many flagged pixels count.
    bkg, _ = background2d(image, excluded, box=params.seg_box, filter_size=3, exclude_percentile=90,
                          interpolation="bilinear")
    with np.errstate(invalid="ignore"):
        above = (image - bkg > params.seg_nsigma * err) & ~excluded
    found = segments(above, params.seg_npixels, connectivity=8)
    return dilate_square(found, params.seg_grow)


def mad_curve(values, tvalues, scales):
    """Squared median absolute deviation of ``values - c * tvalues`` for each scale c."""
    curve = np.empty(len(scales))
    n = values.size
    k = (n - 1) // 2  # lower median: a single partition per median
    for i, c in enumerate(scales):
        resid = values - np.float32(c) * tvalues
        centre = np.partition(resid, k)[k]
        dev = np.abs(resid - centre, out=resid)
        curve[i] = float(np.partition(dev, k)[k]) ** 2
    return curve


def best_scale(scales, curve, halfwidth):
    """Vertex of a parabola fitted to the curve around its lowest point.

    Falls back to the lowest tried scale when the parabola opens downward or
    its vertex leaves the fitted range. Returns (scale, coefficients or None).
    """
    i = int(np.argmin(curve))
    near = np.abs(scales - scales[i]) <= halfwidth + 1e-9
    if near.sum() >= 3:
        coeffs = np.polyfit(scales[near], curve[near], 2)
        if coeffs[0] > 0:
            vertex = -coeffs[1] / (2 * coeffs[0])
            if scales[near].min() <= vertex <= scales[near].max():
                return float(vertex), coeffs
    log.warning("Wisp fit: no parabola minimum near the best scale; using the best tried scale")
    return float(scales[i]), None


def _amp_row_means(image, excluded, rows, noutputs):
    """Mean over the unmasked pixels of every amplifier-row of ``image[rows]`` (n, noutputs)."""
    img = np.asarray(image[rows], dtype=np.float32)
    n, width = img.shape[0], img.shape[1] // noutputs
    keep = (~excluded[rows] & np.isfinite(img)).reshape(n, noutputs, width)
    total = np.where(keep, img.reshape(n, noutputs, width), 0).sum(axis=2, dtype=np.float64)
    return total / np.maximum(keep.sum(axis=2), 1)


def row_centred(image, template, excluded, rows, noutputs):
    """Image and template over ``rows``, each minus its mean over the pixels of every
    amplifier-row unmasked in both.

    A least-squares fit of row-centred image by row-centred template is the
    joint fit of the scale and one free offset per amplifier-row: the 1/f
    stripes drop out, while the wisp, which varies along the rows, stays.
    """
    both = excluded | ~np.isfinite(image) | ~np.isfinite(template)
    out = []
    for a in (image, template):
        mean = _amp_row_means(a, both, rows, noutputs)
        n, width = mean.shape[0], a.shape[1] // noutputs
        blocks = np.asarray(a[rows], dtype=np.float32).reshape(n, noutputs, width)
        out.append((blocks - mean[:, :, None].astype(np.float32)).reshape(n, -1))
    return out


def _highpass_destriped(image, template, excluded, rows, noutputs, window, params):
    """The image with the rough part of each amplifier-row's offset removed.

    1/f striping adds a constant to each amplifier-row, a third of a faint
    wisp's peak; left in, the fit uses the template to cancel some of it (a
    0.6 wisp on NRCA3 fitted as 0.71). Offsets fitted freely with the scale
    also soak up the wisp's own smooth departure from its template, a few
    percent of the scale. So the offsets of a joint fit are smoothed over
    ``window`` rows (longer than the stripes, shorter than the wisp's
    distortions) and only what the smoothing leaves is removed.
    """
    joint = WispParams(**{**dataclasses.asdict(params), "destripe": "centre"})
    first = fit_scale(image, template, excluded, (rows, slice(None)), joint, noutputs)[0]
    offsets = _amp_row_means(image - np.float32(first) * np.nan_to_num(template), excluded,
                             rows, noutputs)
    rough = offsets - ndimage.uniform_filter1d(offsets, window, axis=0, mode="nearest")
    out = np.array(image, dtype=np.float32)
    out[rows] -= np.repeat(rough, image.shape[1] // noutputs, axis=1).astype(np.float32)
    return out


def _smooth_in_region(template, region, sigma):
    """Gaussian-smoothed template over ``region`` (smoothing sees 4 sigma beyond it)."""
    pad = int(np.ceil(4 * sigma))
    ys, xs = region
    y0, x0 = max(ys.start - pad, 0), max(xs.start - pad, 0)
    y1, x1 = min(ys.stop + pad, template.shape[0]), min(xs.stop + pad, template.shape[1])
    smooth = ndimage.gaussian_filter(np.nan_to_num(template[y0:y1, x0:x1]), sigma)
    return smooth[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]


def fit_scale(image, template, excluded, region, params=WispParams(), noutputs=nircam.NAMPS):
    """Fit the template scale in ``region`` of a flat-fielded image.

    ``excluded`` marks flagged pixels and sources. The curve is computed on
    the grid of ``scale_step`` within ``fit_halfwidth`` + 0.1 of the lowest
    point of a five-times coarser grid, which finds the same minimum at a
    third of the cost. Returns (scale, scales, curve, parabola coefficients).
    """
    ys, xs = (slice(*sl.indices(n)[:2]) for sl, n in zip(region, image.shape))
    region = (ys, xs)
    if params.destripe == "highpass":
        image = _highpass_destriped(image, template, excluded, ys, noutputs, params.row_window,
                                    params)
    smooth = np.full(template.shape, np.nan, np.float32)
    full_rows = (ys, slice(0, image.shape[1]))
    smooth[full_rows] = _smooth_in_region(template, full_rows, params.smooth_sigma)
    smooth[~np.isfinite(template)] = np.nan
    if params.destripe == "centre":
        img, tpl = row_centred(image, smooth, excluded, ys, noutputs)
        img, tpl = img[:, xs], tpl[:, xs]
    else:
        img, tpl = image[region], smooth[region]
    use = ~excluded[region] & np.isfinite(img) & np.isfinite(tpl)
    values = img[use].astype(np.float32)
    tvalues = tpl[use].astype(np.float32)
    if values.size < 1000:
        raise CeersError(f"wisp fit: only {values.size} usable pixels in the wisp region")
    grid = np.arange(params.scale_min, params.scale_max + params.scale_step / 2, params.scale_step)
    if params.method == "lsq":
        return least_squares_scale(values, tvalues, grid, params.clip)
    coarse = np.union1d(grid[::5], grid[-1:])
    centre = coarse[int(np.argmin(mad_curve(values, tvalues, coarse)))]
    near = np.abs(grid - centre) <= params.fit_halfwidth + 0.1 + 1e-9
    scales = np.union1d(coarse, grid[near])
    curve = mad_curve(values, tvalues, scales)
    scale, coeffs = best_scale(scales, curve, params.fit_halfwidth)
    return scale, scales, curve, coeffs


def least_squares_scale(values, tvalues, grid, clip=3.0, iterations=5):
    """Least-squares scale (with an offset) of ``tvalues`` in ``values``, clipping outliers.

    The least-squares projection is how the simulator defines the scale of
    a distorted wisp's template component; the median absolute deviation
    weighs the wisp's pixels otherwise. Residuals beyond ``clip`` robust
    sigma (faint sources, cosmic-ray residues) are left out,
    iterating from the plain least-squares scale. Returns (scale, grid,
    curve, coefficients): the curve is the variance of the kept residuals
    over the grid, an exact parabola with its vertex at the scale.
    """
    keep = np.ones(values.size, bool)
    for _ in range(iterations + 1):
        x, t = values[keep].astype(np.float64), tvalues[keep].astype(np.float64)
        x -= x.mean()
        t -= t.mean()
        scale = float((x * t).sum() / (t * t).sum())
        resid = values - np.float32(scale) * tvalues
        k = resid.size // 2
        centre = np.partition(resid, k)[k]
        sigma = 1.4826 * np.partition(np.abs(resid - centre), k)[k]
        new_keep = np.abs(resid - centre) < clip * sigma
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    n = x.size
    coeffs = np.array([(t * t).sum(), -2 * (x * t).sum(), (x * x).sum()]) / n
    return scale, grid, np.polyval(coeffs, grid), coeffs


def region_slices(detector, shape, substrt=(1, 1)):
    """Wisp region of a detector as slices of an image (a subarray starting at ``substrt``)."""
    x0, x1, y0, y1 = nircam.WISP_REGIONS[detector.upper()]
    ox, oy = substrt[0] - 1, substrt[1] - 1
    ys = slice(max(y0 - oy, 0), min(y1 - oy, shape[0]))
    xs = slice(max(x0 - ox, 0), min(x1 - ox, shape[1]))
    return ys, xs


def plot_fit(path, scales, curve, coeffs, scale, title):
    """QA figure of the fit curve and its parabola."""
    from .. import figures

    fig, ax = figures.pyplot().subplots(figsize=(6, 4))
    ax.plot(scales, curve, "o", ms=3, label="MAD$^2$(image - c x template)")
    if coeffs is not None:
        x = np.linspace(max(scales[0], scale - 0.4), min(scales[-1], scale + 0.4), 200)
        ax.plot(x, np.polyval(coeffs, x), "-", label="parabola")
    ax.axvline(scale, color="k", ls=":", label=f"c = {scale:.3f}")
    ax.set_xlabel("template scale c")
    ax.set_ylabel("MAD$^2$ (DN/s)$^2$")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figures.save(fig, path)


# --------------------------------------------------------------------------
# the step


def apply(model, params, template, flat=None):
    """Subtract the scaled wisp template from a rate ImageModel (in place).

    ``template`` is the template image on the model's pixels; ``flat`` (fit
    mode) the CRDS flat. The fit curve is returned in ``status.products``.
    """
    params.check()
    det, filt = model.meta.instrument.detector, model.meta.instrument.filter
    if not applies_to(det, filt):
        return model, Status(False, f"{det} {filt} has no wisps: nothing to subtract")
    data = model.data
    products = {}
    if params.fit:
        t0 = time.perf_counter()
        excluded = dq_mask(model.dq) | ~np.isfinite(data) | ~np.isfinite(flat)
        with np.errstate(invalid="ignore", divide="ignore"):
            flat_fielded = np.where(excluded, np.nan, data / flat).astype(np.float32)
            err = np.where(excluded, np.nan, model.err / flat).astype(np.float32)
        excluded |= source_mask(flat_fielded, err, excluded, params)
        region = region_slices(det, data.shape, (model.meta.subarray.xstart or 1,
                                                 model.meta.subarray.ystart or 1))
        scale, scales, curve, coeffs = fit_scale(flat_fielded, template, excluded, region, params,
                                                 model.meta.exposure.noutputs or nircam.NAMPS)
        products.update(scales=scales, curve=curve, coeffs=coeffs)
        log.info("Wisp fit: scale %.4f (%.2f s, %d masked pixels in the region)", scale,
                 time.perf_counter() - t0, int(excluded[region].sum()))
    else:
        scale = float(params.scale)
    model.data = (data - np.float32(scale) * clean_template(template, data)).astype(data.dtype)
    return model, Status(True, f"subtracted {scale:.4f} x template", values={"scale": scale},
                         products=products)
