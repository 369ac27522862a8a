"""Sky pedestal, read-noise variance rescaling and variance holes of one Image3 image.

CEERS removes each image's sky pedestal before drizzling, rescales its
VAR_RNOISE (the array the drizzle's inverse-variance weights come from) to
the noise the sky really shows, and turns zero variances into infinite
ones, so that bad pixels carry no weight:

1. a 2D background model (tiered source mask, Background2D of small boxes)
   gives the background-subtracted copy ``_bkgsub1.fits``, on which the sky
   noise is measured;
2. the pedestal is the peak of a Gaussian fitted to the histogram of the
   pixels the 1/f step left unmasked (``_rate_1fmask.fits``);
3. VAR_RNOISE is multiplied by the measured sky variance over its own mean;
4. zeros in VAR_RNOISE, VAR_POISSON and VAR_FLAT become +inf.

What differs from DR0.5 (each an option, the DR0.5 way kept):

- the sky variance is the 5-sigma-clipped variance of single background
  pixels of ``_bkgsub1``, which on simulated exposures comes within 1% of
  the true per-pixel noise. DR0.5 took the biweight midvariance of 7x7
  block sums over 49, which depends on how the noise correlates between
  pixels (the 1/f residue along rows raises block sums, the small-box
  background model takes out part of what a block holds) and on the
  biweight's own bias (+1.4% for Gaussian noise): on the same exposures it
  scatters from 22% low to 2% high. Both are computed and logged;
- VAR_RNOISE, rescaled to the whole background variance, already holds the
  sky's Poisson noise, so that share of VAR_POISSON is removed (the
  sources' own Poisson noise stays) and the mosaic's ERR, the square root
  of the sum of the variances, counts it once: left in, at CEERS depths
  (where the sky's Poisson noise is most of the background noise) ERR
  overstates the noise by about a third;
- the light the sources spread beyond the 1/f mask (PSF wings, galaxy
  outskirts) is fitted (:func:`ceers_nircam.background.source_halo`) and
  left out of the pedestal histogram, which it would raise;
- pixels that see no sky (reference pixels, flagged REFERENCE_PIXEL or
  NON_SCIENCE but not DO_NOT_USE by some references) get DO_NOT_USE, so
  the drizzle gives them no weight;
- a variance array that is zero everywhere (a reference without errors)
  carries no holes to fill and is left alone.
"""

import dataclasses
import time

import numpy as np
from astropy.stats import biweight_location, biweight_midvariance, sigma_clip, sigma_clipped_stats
from stdatamodels.jwst.datamodels import dqflags

from ..background import EXPOSURE_HALO_EDGES, background2d, gaussian, pedestal_fit, source_halo
from ..cli import CeersError, get_logger, option
from ..masking import SourceMaskParams, tier_sources, tiered_source_mask
from . import Status

log = get_logger("skyvar")

DO_NOT_USE = dqflags.pixel["DO_NOT_USE"]
# Pixels that see no sky.
NO_SKY = dqflags.pixel["REFERENCE_PIXEL"] | dqflags.pixel["NON_SCIENCE"]
VARIANCES = ("var_rnoise", "var_poisson", "var_flat")


@dataclasses.dataclass(frozen=True)
class SkyVarParams:
    """Options of stage3/skywcsvar.py (defaults: DR0.5 unless said otherwise)."""

    mask_dir: str = option("", "directory of the 1/f source masks <root>_rate_1fmask.fits "
                               "(default: the image's directory)")
    wcs_dir: str = option("", "directory of the saved <root>_tweakreg.asdf applied to images not "
                              "yet aligned (default: the image's directory)")
    output_dir: str = option("", "where _match.fits and _bkgsub1.fits go (default: the image's "
                                 "directory)")
    overwrite: bool = option(False, "redo an image whose _match.fits is already complete")
    # 2D background model
    ring_radius: float = option(40.0, "tiered mask: ring median radius (pixels)")
    ring_width: float = option(3.0, "tiered mask: ring width (pixels)")
    clip_box: int = option(100, "tiered mask: clip bright pixels at --clip_nsigma above a "
                                "Background2D of this box first")
    clip_nsigma: float = option(5.0, "tiered mask: clipping level (sigma)")
    large_nsigma: float = option(2.0, "tiered mask: also mask sources wider than the ring, where "
                                      "the image smoothed over half the ring radius stands this "
                                      "many pixel sigma above the sky around (0: off, DR0.5)")
    bkg_box: int = option(5, "Background2D box (pixels)")
    bkg_filter: int = option(3, "Background2D median filter (boxes)")
    bkg_sigma: float = option(3.0, "Background2D sigma clipping")
    bkg_exclude: float = option(90.0, "Background2D: leave out boxes with more than this "
                                      "percentage of pixels masked")
    # pedestal
    ped_sigma: float = option(5.0, "pedestal: sigma clipping of the unmasked pixels")
    ped_iters: int = option(5, "pedestal: clipping iterations")
    ped_lo: float = option(-1.5, "pedestal: histogram start (MJy/sr)")
    ped_hi: float = option(2.0, "pedestal: histogram end (MJy/sr)")
    ped_bin: float = option(0.001, "pedestal: histogram bin (MJy/sr)")
    ped_halfwidth: float = option(0.0, "pedestal: fit only within this many half-maximum widths "
                                       "of the peak (0: whole histogram, DR0.5)")
    ped_halo: bool = option(True, "pedestal: fit the light the sources spread beyond the 1/f "
                                  "mask and leave it out of the histogram (DR0.5: off; the 1/f "
                                  "step now leaves that light in the image)")
    # variance
    variance_method: str = option("pixels", "sky variance from single pixels of _bkgsub1 "
                                            "('pixels', 5-sigma clipped) or from the biweight "
                                            "midvariance of 7x7 block sums ('blocks', DR0.5)",
                                  choices=("pixels", "blocks"))
    block: int = option(7, "block size of the 'blocks' method")
    sky_poisson: bool = option(True, "remove the sky's share of VAR_POISSON once VAR_RNOISE "
                                     "holds it (DR0.5: off, the sky noise counted twice in ERR)")
    fill_holes: bool = option(True, "set zero variances to +inf")
    plot: bool = option(False, "save a QA figure <root>_<asn>_skyvar.png: the pedestal histogram "
                               "and its Gaussian, the background model and the mask")

    def mask_params(self):
        """The tiered source mask of the 2D background model (stage 1's, clipped first)."""
        return SourceMaskParams(ring_radius=self.ring_radius, ring_width=self.ring_width,
                                clip_box=self.clip_box, clip_nsigma=self.clip_nsigma,
                                large_nsigma=self.large_nsigma)


def background_model(image, excluded, params):
    """2D background model of an image and its tiered mask bits (bit 0 = excluded)."""
    bits = tiered_source_mask(image, excluded, params.mask_params())
    bkg, _ = background2d(image, bits != 0, box=params.bkg_box, filter_size=params.bkg_filter,
                          sigma=params.bkg_sigma, estimator="biweight",
                          exclude_percentile=params.bkg_exclude, want_rms=False)
    return bkg, bits


def sky_pedestal(image, usable, params):
    """Sky pedestal (MJy/sr) of the ``usable`` pixels, sigma-clipped, from a Gaussian
    fitted to their histogram (DR0.5): a :class:`~ceers_nircam.background.PedestalFit`."""
    clipped = sigma_clip(image[usable], sigma=params.ped_sigma, maxiters=params.ped_iters,
                         masked=False, copy=False)
    return pedestal_fit(clipped, lo=params.ped_lo, hi=params.ped_hi, binsize=params.ped_bin,
                        fit_halfwidth=params.ped_halfwidth or None)


def pixel_variance(bkgsub, masked, sigma=5.0, max_values=4_000_000):
    """Sky variance per pixel: the ``sigma``-clipped variance of the unmasked pixels of a
    background-subtracted image (a regular subsample of large inputs).

    Clipping at 5 sigma keeps 99.99994% of Gaussian noise (the variance is
    0.3% low) and drops what cosmic rays and snowballs left; the biweight
    midvariance would read Gaussian noise 1.4% high.
    """
    values = bkgsub[~masked]
    values = values[np.isfinite(values)]
    if values.size > max_values:
        values = values[:: values.size // max_values + 1]
    _, _, std = sigma_clipped_stats(values.astype(np.float64), sigma=sigma, maxiters=10)
    return float(std) ** 2


def block_variance(bkgsub, masked, block=7):
    """DR0.5's sky variance per pixel: the biweight midvariance of the sums of
    ``block`` x ``block`` blocks free of masked pixels, over ``block``^2.
    Also returns the boolean image of the pixels in those blocks."""
    ny, nx = bkgsub.shape
    by, bx = ny // block, nx // block
    cut = (slice(0, by * block), slice(0, bx * block))

    def blocks(a):
        return a[cut].reshape(by, block, bx, block).transpose(0, 2, 1, 3).reshape(by, bx, -1)

    bad = blocks(masked | ~np.isfinite(bkgsub)).any(axis=2)
    sums = blocks(np.where(np.isfinite(bkgsub), bkgsub, 0)).sum(axis=2, dtype=np.float64)
    used = np.zeros(bkgsub.shape, bool)
    used[cut] = np.repeat(np.repeat(~bad, block, axis=0), block, axis=1)
    if (~bad).sum() < 10:  # no block free of masked pixels
        return np.nan, used
    return float(biweight_midvariance(sums[~bad])) / block**2, used


def rnoise_factor(sky_variance, var_rnoise, pixels):
    """Factor that makes the mean VAR_RNOISE over ``pixels`` the measured sky variance."""
    values = var_rnoise[pixels & np.isfinite(var_rnoise)]
    if values.size == 0 or not np.isfinite(sky_variance):
        return np.nan, np.nan
    mean = float(biweight_location(values.astype(np.float64)))
    return sky_variance / mean, mean


def fill_variance_holes(model):
    """Set variances of exactly 0 to +inf (zero weight in the drizzle); return counts.

    An array that is zero everywhere has no holes (a reference without
    errors): it is left as it is, counted as -1.
    """
    counts = {}
    for name in VARIANCES:
        var = getattr(model, name, None)
        if var is None or var.size == 0:
            continue
        zero = var == 0
        if zero.all():
            counts[name] = -1
            continue
        var[zero] = np.inf
        setattr(model, name, var)
        counts[name] = int(zero.sum())
    return counts


def remove_sky_poisson(var_poisson, data, sky, keep=1e-3):
    """VAR_POISSON less the sky's Poisson variance, once VAR_RNOISE holds it.

    ``sky`` is the sky level of each pixel (the 2D background model). The pipeline's Poisson variance of a pixel is proportional to its signal,
    so ``var_poisson x sky / data`` is the sky's share and
    ``var_poisson x (1 - sky / data)`` the sources'. Where a pixel holds no
    more than sky, a token ``keep`` of its variance stays: zero would mark
    it a hole. Returns the new array and the mean sky share removed.
    """
    var_poisson = np.asarray(var_poisson, dtype=np.float32)
    has = (var_poisson > 0) & np.isfinite(var_poisson) & (data > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        source_share = np.where(has, 1 - np.asarray(sky, dtype=np.float32) / data, 1)
    out = np.where(has, var_poisson * np.maximum(source_share, np.float32(keep)), var_poisson)
    removed = float(np.mean((var_poisson - out)[has])) if has.any() else 0.0
    return out.astype(np.float32), removed


def apply(model, params, fmask):
    """Pedestal, VAR_RNOISE rescaling and variance holes of an ImageModel (in place).

    ``fmask`` is the 1/f source mask of the exposure (nonzero = masked).
    ``status.products`` holds the 2D background ``bkg``, the
    background-subtracted image ``bkgsub`` and the tier ``bits``;
    ``status.values`` the pedestal, the factor and the variances measured.
    """
    t0 = time.perf_counter()
    data = np.asarray(model.data, dtype=np.float32)
    dq = model.dq
    blind = (dq & NO_SKY) != 0
    excluded = ((dq & DO_NOT_USE) != 0) | blind | ~np.isfinite(data)
    bkg, bits = background_model(data, excluded, params)
    bkgsub = data - bkg
    t_bkg = time.perf_counter() - t0

    usable = (dq == 0) & (fmask == 0) & np.isfinite(data)
    fit = sky_pedestal(data, usable, params)
    halo = None
    sources = tier_sources(fmask)
    if params.ped_halo and sources.any():
        # PSF wings and galaxy outskirts below the mask's thresholds raise the unmasked
        # pixels' histogram by a few 1e-4 MJy/sr, most where a large galaxy is masked.
        halo = source_halo(np.where(np.isfinite(data), data, 0).astype(np.float32), sources,
                           ~excluded, fit.value, np.full(data.shape, fit.value, np.float32),
                           EXPOSURE_HALO_EDGES, stride=3)
        first = fit.value
        fit = sky_pedestal(data - halo.image, usable, params)
        log.info("Pedestal without the source halos: %.5f MJy/sr (with them %.5f)", fit.value,
                 first)
    level, method = fit.value, fit.method

    # Sky noise: pixels no tier masks and no DQ flag touches (a jump-flagged
    # pixel's slope comes from fewer groups and is noisier).
    quiet = (bits == 0) & (dq == 0) & np.isfinite(bkgsub)
    var_rnoise = np.asarray(model.var_rnoise, dtype=np.float32)
    blocks_var, blocks_pixels = block_variance(bkgsub, ~quiet, params.block)
    blocks_factor, _ = rnoise_factor(blocks_var, var_rnoise, blocks_pixels)
    if params.variance_method == "blocks":
        sky_var, pixels = blocks_var, blocks_pixels
    else:
        sky_var, pixels = pixel_variance(bkgsub, ~quiet), quiet
    factor, rn_mean = rnoise_factor(sky_var, var_rnoise, pixels)
    if not (np.isfinite(factor) and factor > 0):
        raise CeersError(f"sky variance {sky_var:.3g} and mean VAR_RNOISE {rn_mean:.3g} give no "
                         "usable factor")
    values = {"pedestal": level, "pedestal_method": method, "sky_variance": sky_var,
              "rnoise_mean": rn_mean, "factor": factor, "blocks_factor": blocks_factor,
              "blind": int((blind & ((dq & DO_NOT_USE) == 0)).sum())}

    model.data = data - np.float32(level)
    model.dq = np.where(blind, dq | DO_NOT_USE, dq).astype(dq.dtype)
    model.var_rnoise = (var_rnoise * np.float32(factor)).astype(np.float32)
    if params.sky_poisson:
        model.var_poisson, values["sky_poisson"] = remove_sky_poisson(model.var_poisson, data, bkg)
    if params.fill_holes:
        values["holes"] = fill_variance_holes(model)
    model.meta.background.level = level
    model.meta.background.subtracted = True
    model.meta.background.method = "local"
    values["seconds"] = time.perf_counter() - t0
    log.info("Sky pedestal %.5f MJy/sr (%s); sky variance %.4g per pixel (%s), mean VAR_RNOISE "
             "%.4g: VAR_RNOISE factor %.3f (DR0.5's 7x7 blocks: %.3f); %.2f s (background model "
             "%.2f s)", level, method, sky_var, params.variance_method, rn_mean, factor,
             blocks_factor, values["seconds"], t_bkg)
    return model, Status(True, "pedestal removed, VAR_RNOISE rescaled", values=values,
                         products={"bkg": bkg, "bkgsub": bkgsub, "bits": bits, "pedestal": fit,
                                   "halo": halo})


# --------------------------------------------------------------------------
# files


def product_paths(image, params):
    """Paths around ``<root>_<asn>_crf.fits``: the 1/f mask ``<root>_rate_1fmask.fits``, the
    saved WCS ``<root>_tweakreg.asdf``, and the ``_match`` and ``_bkgsub1`` products."""
    import os
    import re

    name = os.path.basename(image)
    found = re.fullmatch(r"(.+?)((?:_a\d{4})?)_crf\.fits", name)
    if not found:
        raise CeersError(f"{image}: expected a file ending in _crf.fits (an Image3 product)")
    root, asn = found.groups()
    folder = os.path.dirname(image) or "."
    out = params.output_dir or folder
    return {"fmask": os.path.join(params.mask_dir or folder, f"{root}_rate_1fmask.fits"),
            "wcs": os.path.join(params.wcs_dir or folder, f"{root}_tweakreg.asdf"),
            "match": os.path.join(out, f"{root}{asn}_match.fits"),
            "bkgsub": os.path.join(out, f"{root}{asn}_bkgsub1.fits"),
            "plot": os.path.join(out, f"{root}{asn}_skyvar.png")}


def read_fmask(path, image):
    """The 1/f source mask of an image (nonzero = masked)."""
    import os

    from astropy.io import fits

    if not os.path.exists(path):
        raise CeersError(f"{image}: no 1/f source mask {path} (remstriping.py writes it); "
                         "give its directory with --mask_dir")
    try:
        return np.asarray(fits.getdata(path, "MASK"))
    except (OSError, KeyError, ValueError) as err:
        raise CeersError(f"{path}: not a readable 1/f source mask ({err})") from None


def open_aligned(image, saved_wcs):
    """The image as an ImageModel, with the saved WCS applied if its tweakreg step is not
    COMPLETE; returns (model, name of the WCS file applied or "")."""
    import os

    from stdatamodels.jwst import datamodels

    from .astrometry import apply_wcs, load_wcs

    model = datamodels.ImageModel(image)
    if model.data.shape != model.var_rnoise.shape:
        model.close()
        raise CeersError(f"{image}: VAR_RNOISE shape {model.var_rnoise.shape} differs from SCI")
    status = model.meta.cal_step.tweakreg
    if status == "COMPLETE":
        return model, ""
    if not os.path.exists(saved_wcs):
        model.close()
        raise CeersError(f"{image}: not aligned (tweakreg {status}) and no saved WCS "
                         f"{saved_wcs}; give its directory with --wcs_dir")
    try:
        wcs, wcsinfo, _ = load_wcs(saved_wcs)
        apply_wcs(model, wcs, wcsinfo)
    except CeersError as err:
        model.close()
        raise CeersError(f"{saved_wcs}: {err}") from None
    log.info("Applied the saved WCS %s", saved_wcs)
    return model, os.path.basename(saved_wcs)


def history_values(values):
    """The numbers of ``status.values`` worth a history entry, rounded."""
    out = {"pedestal": round(values["pedestal"], 6), "pedestal_method": values["pedestal_method"],
           "sky_variance": float(f"{values['sky_variance']:.5g}"),
           "rnoise_factor": round(values["factor"], 5),
           "dr05_blocks_factor": round(values["blocks_factor"], 5)}  # nan: no block free of masks
    if "holes" in values:
        out["holes"] = "/".join(f"{k[4:]}:{v}" for k, v in values["holes"].items())
    return out


def write_bkgsub(path, image, products, entry):
    """``_bkgsub1.fits``: the image less its 2D background (SCI), the model (BKGD) and the tier
    bits (BKGMASK: bit 0 excluded, bit k the k-th tier), under the image's primary header."""
    from astropy.io import fits

    from ..fitsio import write_hdulist

    header = fits.getheader(image, 0)
    header["HISTORY"] = entry
    hdul = fits.HDUList([fits.PrimaryHDU(header=header),
                         fits.ImageHDU(products["bkgsub"].astype(np.float32), name="SCI"),
                         fits.ImageHDU(products["bkg"].astype(np.float32), name="BKGD"),
                         fits.ImageHDU(products["bits"].astype(np.uint8), name="BKGMASK")])
    return write_hdulist(hdul, path)


def plot_sky(path, products, title):
    """QA figure: the pedestal histogram with its Gaussian, the 2D background model and the
    tiered mask over the background-subtracted image."""
    from .. import figures

    fit = products["pedestal"]
    fig, (hx, bx, mx) = figures.pyplot().subplots(1, 3, figsize=(15, 4.8))
    if fit.counts is not None:
        near = fit.counts > 0.002 * fit.counts.max()
        lo, hi = fit.centres[near].min(), fit.centres[near].max()
        show = (fit.centres >= lo) & (fit.centres <= hi)
        hx.step(fit.centres[show], fit.counts[show], where="mid", color="0.3", label="unmasked pixels")
        if fit.popt is not None:
            x = fit.centres[fit.fitted]
            hx.plot(x, gaussian(x, *fit.popt), color="tab:red",
                    label=f"Gaussian: peak {fit.popt[1]:.4f}, sigma {abs(fit.popt[2]):.4f}")
    hx.axvline(fit.value, color="k", ls=":", label=f"pedestal {fit.value:.4f} ({fit.method})")
    hx.set_xlabel("MJy/sr")
    hx.set_ylabel("pixels per bin")
    hx.legend(fontsize=8)
    hx.set_title("sky pedestal", fontsize=9)
    im = figures.show(bx, products["bkg"], "2D background model (MJy/sr)", cmap="viridis")
    fig.colorbar(im, ax=bx, fraction=0.046)
    vmin, vmax = figures.limits(products["bkgsub"], 2, 98)
    figures.show(mx, products["bkgsub"], "background-subtracted, tiered mask in red",
                 vmin=vmin, vmax=vmax)
    figures.overlay(mx, products["bits"] != 0)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figures.save(fig, path)
