"""Source catalogs for astrometry: photutils segmentation and windowed centroids.

CEERS measured the sources it aligned on with Source Extractor's windowed
centroids (XWIN_IMAGE): a Gaussian-weighted centroid iterated over a window
matched to each source's size, much less noisy than an isophotal or
first-moment centroid on faint, extended galaxies. photutils computes the
same quantity (``SourceCatalog.centroid_win``), so no external binary is
needed. Positions are 0-based pixels, as TweakReg takes them.

Detection follows the Source Extractor recipe the CEERS parameters are
written for: subtract a mesh background, smooth with a Gaussian of
``kernel_fwhm``, keep connected regions of at least ``detect_minarea``
pixels above ``detect_thresh`` times the background noise of the smoothed
image, and deblend them with ``deblend`` thresholds (DEBLEND_NTHRESH).
"""

import dataclasses
import warnings

import numpy as np
from astropy.table import Table

from ..cli import option

# Floor (pixels) of the positional uncertainty given to a source: a centroid is never
# trusted to better than this, however bright.
POSITION_FLOOR = 0.05

# DQ bits that make a pixel unusable for measuring a position.
BAD_BITS = ("DO_NOT_USE", "SATURATED")


@dataclasses.dataclass(frozen=True)
class DetectionParams:
    """Source-finding parameters (the first block of a CEERS TweakReg config section)."""

    detect_thresh: float = option(4.0, "detection threshold in units of the smoothed "
                                  "background noise")
    detect_minarea: int = option(16, "minimum connected pixels of a source")
    deblend: int = option(4, "deblending thresholds (Source Extractor's DEBLEND_NTHRESH; 0: no "
                          "deblending)")
    kernel_fwhm: float = option(1.5, "FWHM (pixels) of the Gaussian smoothing kernel")
    kernel_nsigma: float = option(5.0, "half-width of the kernel in units of its sigma")
    snr_threshold: float = option(2.5, "keep sources whose segment flux S/N is at least this")
    bkg_boxsize: int = option(100, "mesh size (pixels) of the background model")


def bad_pixel_mask(dq):
    """True where a pixel must not enter a centroid (DO_NOT_USE or SATURATED set)."""
    from stdatamodels.jwst.datamodels import dqflags

    bits = 0
    for name in BAD_BITS:
        bits |= dqflags.pixel[name]
    return (np.asarray(dq) & bits) != 0


def smoothing_kernel(fwhm, nsigma):
    """1-D profile of the unit-sum Gaussian smoothing kernel (its 2-D form is the outer product).

    Each weight is the Gaussian integrated over its pixel; the kernel spans
    ``nsigma`` sigma on each side of its centre.
    """
    from scipy.special import erf

    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    half = max(1, int(np.ceil(nsigma * sigma)))
    edges = (np.arange(-half, half + 2) - 0.5) / (np.sqrt(2.0) * sigma)
    weights = np.diff(erf(edges))
    return weights / weights.sum()


def smooth(image, kernel1d):
    """Image convolved with the separable kernel (two 1-D passes: fast on full frames)."""
    from scipy.ndimage import correlate1d

    out = correlate1d(image, kernel1d, axis=0, mode="nearest")
    return correlate1d(out, kernel1d, axis=1, mode="nearest")


def background(data, mask, boxsize):
    """Mesh background and its noise (photutils Background2D, sigma-clipped medians).

    The mesh is expanded to the image by linear interpolation: Background2D's
    cubic expansion costs seconds on a full frame and changes nothing a
    centroid can notice.
    """
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, MedianBackground, StdBackgroundRMS
    from scipy.ndimage import zoom

    ny, nx = data.shape
    box = (min(boxsize, ny), min(boxsize, nx))
    bkg = Background2D(data, box, mask=mask, filter_size=3, sigma_clip=SigmaClip(sigma=3.0),
                       bkg_estimator=MedianBackground(), bkg_rms_estimator=StdBackgroundRMS())

    def expand(mesh):
        mesh = np.asarray(mesh, dtype=np.float64)
        return zoom(mesh, (ny / mesh.shape[0], nx / mesh.shape[1]), order=1, mode="nearest",
                    grid_mode=True)

    return expand(bkg.background_mesh), expand(bkg.background_rms_mesh)


def find_sources(data, err, mask, params):
    """Catalog of the sources in an image.

    Parameters
    ----------
    data, err : 2-D arrays
        Image and its 1-sigma uncertainty (same units).
    mask : 2-D bool array
        True where pixels are unusable.
    params : DetectionParams

    Returns
    -------
    astropy.table.Table
        ``id``, ``x``, ``y`` (windowed centroid, 0-based), ``flux``,
        ``flux_err``, ``snr``, ``area``; brightest first.
    """
    from photutils.segmentation import SourceCatalog, deblend_sources, detect_sources
    from photutils.utils import NoDetectionsWarning

    data = np.asarray(data, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool) | ~np.isfinite(data)
    bkg, rms = background(np.where(mask, 0.0, data), mask, params.bkg_boxsize)
    sub = np.where(mask, 0.0, data - bkg)
    kernel = smoothing_kernel(params.kernel_fwhm, params.kernel_nsigma)
    smoothed = smooth(sub, kernel)
    # Smoothing white noise of rms s by a unit-sum kernel k leaves s * sqrt(sum k^2)
    # (sum over the 2-D kernel = (sum of the 1-D weights squared) squared): the
    # threshold is counted in units of the smoothed image's own noise.
    threshold = params.detect_thresh * rms * np.sum(kernel**2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)  # a blank image is not an error here
        segm = detect_sources(smoothed, threshold, params.detect_minarea, connectivity=8, mask=mask)
    if segm is None:
        return _empty()
    # Only a segment with room for two sources of the minimum area can be split.
    splittable = segm.labels[segm.areas >= 2 * params.detect_minarea]
    if params.deblend > 0 and splittable.size:
        segm = deblend_sources(smoothed, segm, params.detect_minarea, labels=splittable,
                               n_levels=int(params.deblend), contrast=0.005, progress_bar=False)
    err = np.where(mask | ~np.isfinite(err), 0.0, err)
    cat = SourceCatalog(sub, segm, convolved_data=smoothed, error=err, mask=mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.asarray(cat.segment_flux) / np.asarray(cat.segment_flux_err)
    # Windowed centroids (the costly part) only for the sources kept.
    cat = cat[np.flatnonzero(np.isfinite(snr) & (snr >= params.snr_threshold))]
    if len(cat) == 0:
        return _empty()
    snr = np.atleast_1d(np.asarray(cat.segment_flux) / np.asarray(cat.segment_flux_err))
    x, y = np.atleast_1d(cat.x_centroid_win), np.atleast_1d(cat.y_centroid_win)
    fwhm = np.atleast_1d(np.asarray(cat.fwhm.value))
    pos_err = np.hypot(fwhm / snr, POSITION_FLOOR)
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(pos_err)
    out = Table({"id": np.atleast_1d(cat.label)[keep], "x": x[keep], "y": y[keep],
                 "flux": np.atleast_1d(cat.segment_flux)[keep],
                 "flux_err": np.atleast_1d(cat.segment_flux_err)[keep], "snr": snr[keep],
                 "area": np.atleast_1d(cat.area.value)[keep], "fwhm": fwhm[keep],
                 "pos_err": pos_err[keep], "weight": 1.0 / pos_err[keep] ** 2})
    out.sort("flux", reverse=True)
    return out


def _empty():
    names = ("id", "x", "y", "flux", "flux_err", "snr", "area", "fwhm", "pos_err", "weight")
    return Table(names=names, dtype=(int,) + (float,) * (len(names) - 1))
