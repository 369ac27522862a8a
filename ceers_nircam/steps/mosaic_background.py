"""Mosaic background: tiered source masks per band, one mask merged across bands, Background2D.

CEERS's last step on the mosaics of a pointing:

1. per mosaic, a tiered source mask and a first 2D background with the
   band's parameters (a config file in CEERS's INI format: a ``[nircam]``
   section for every NIRCam filter, one section per HST band), written as
   ``<mosaic>_bkgsub1.fits``;
2. the source bits of every mosaic's mask (and of any HST mosaic's) ORed
   into one mask: a faint source seen in one band is masked in all;
3. per mosaic, Background2D with the merged mask plus the mosaic's own
   off-detector pixels, subtracted: ``<mosaic>_mbkgsub1.fits``, with the
   background (BKGD) and the mask used (BKGMASK);
4. (not in DR0.5) on the subtracted mosaic, the noise of empty apertures of
   several radii over what ERR predicts for them (:mod:`ceers_nircam.apertures`):
   the APERNOISE table of ``_mbkgsub1.fits``, the factor by which an aperture
   error from ERR is multiplied for the pixels' correlated noise; on request,
   ERR and the variance arrays rescaled so that ERR alone predicts the noise
   of apertures of one chosen radius.

The tiered mask and the background are the same code stage 1 and the
per-image sky step use (:mod:`ceers_nircam.masking`,
:func:`ceers_nircam.background.background2d`). A mosaic's empty margin is
cut off while it is processed, so time and memory follow the area the
images cover.
"""

import configparser
import dataclasses
import os
import re
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import apertures
from ..background import background2d, ring_spectra, sky_surface, source_halo
from ..cli import CeersError, get_logger, option
from ..masking import SourceMaskParams, block_reduce, tier_sources, tiered_source_mask

log = get_logger("mosaic_background")

NIRCAM_SECTION = "nircam"
# A band section is "nircam" or a filter name: F606W, F160W, F410M, F850LP ...
BAND_PATTERN = re.compile(r"f\d{3,4}(w|m|n|lp|x)\d?")
OFF_DETECTOR = 1  # BKGMASK bit of the mosaic's own empty pixels
SOURCES = 2  # BKGMASK bit of the merged source mask
HALO = 4  # BKGMASK bit of the pixels where the band's fitted source halo is bright


def _ints(text):
    return tuple(int(v) for v in _floats(text))


def _floats(text):
    return tuple(float(v) for v in str(text).replace(",", " ").split())


@dataclasses.dataclass(frozen=True)
class BandParams:
    """One band's section of the config file (defaults: DR0.5's NIRCam values).

    The first seven keys are those of CEERS's file; the others may be added
    to a section.
    """

    bg_box_size: int = 10
    bg_filter_size: int = 5
    ring_radius_in: float = 80.0
    ring_width: float = 4.0
    tier_dilate_size: tuple = (33, 25, 21, 19)
    tier_nsigma: tuple = (1.5, 1.5, 1.5, 1.5)
    tier_npixels: tuple = (15, 10, 3, 1)
    tier_smooth_sigma: tuple = (25.0, 15.0, 5.0, 2.0)
    first_extra_dilation: int = 0
    clip_box: int = 100
    clip_nsigma: float = 5.0
    large_nsigma: float = 2.0
    bg_sigma: float = 3.0
    bg_exclude_percentile: float = 90.0
    threshold_noise: str = "pixel"
    surface_degree: int = 2
    surface_box: int = 100
    halo_iterations: int = 1
    halo_edges: tuple = (0, 3, 6, 12, 24, 48, 96, 160)
    halo_mask: float = 0.2

    CONVERTERS = {"bg_box_size": int, "bg_filter_size": int, "ring_radius_in": float,
                  "ring_width": float, "tier_dilate_size": _ints, "tier_nsigma": _floats,
                  "tier_npixels": _ints, "tier_smooth_sigma": _floats,
                  "first_extra_dilation": int, "clip_box": int, "clip_nsigma": float,
                  "large_nsigma": float, "bg_sigma": float, "bg_exclude_percentile": float,
                  "threshold_noise": str, "surface_degree": int, "surface_box": int,
                  "halo_iterations": int, "halo_edges": _floats, "halo_mask": float}

    def mask_params(self):
        """The tiered source mask of this band."""
        return SourceMaskParams(
            ring_radius=self.ring_radius_in, ring_width=self.ring_width,
            smooth_sigmas=self.tier_smooth_sigma, nsigmas=self.tier_nsigma,
            min_areas=self.tier_npixels, dilations=self.tier_dilate_size,
            first_extra_dilation=self.first_extra_dilation, clip_box=self.clip_box,
            clip_nsigma=self.clip_nsigma, large_nsigma=self.large_nsigma, stats_stride=5,
            threshold_noise=self.threshold_noise)

    def surface(self, image, masked):
        """The band's polynomial sky surface (:func:`~ceers_nircam.background.sky_surface`;
        zeros with ``surface_degree`` 0, as DR0.5)."""
        return sky_surface(image, masked, self.surface_degree, self.surface_box)

    def halo(self, image, sources, usable, sky, smooth_sky, cache=None):
        """The light of the masked sources beyond the mask
        (:func:`~ceers_nircam.background.source_halo` with ``halo_edges``)."""
        return source_halo(image, sources, usable, sky, smooth_sky, self.halo_edges, cache=cache,
                           sky_degree=self.surface_degree)

    def background(self, image, masked, want_rms=False):
        """Background2D (biweight, zoom) of an image with ``masked`` pixels left out."""
        return background2d(image, masked, box=self.bg_box_size, filter_size=self.bg_filter_size,
                            sigma=self.bg_sigma, estimator="biweight",
                            exclude_percentile=self.bg_exclude_percentile, want_rms=want_rms)


def read_config(path):
    """{band: BandParams} of a CEERS mosaic-background config file.

    Section names are ``nircam`` or band names (``f606w``); every key must
    be one :class:`BandParams` knows, with a value of its type. Anything
    else is a one-line error naming the file and section.
    """
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    try:
        with open(path) as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        raise CeersError(f"{path}: no such config file") from None
    except (OSError, configparser.Error) as err:
        text = str(err).splitlines()[0]
        raise CeersError(f"{path}: not a readable config file ({text})") from None
    bands = {}
    for section in parser.sections():
        name = section.strip().lower()
        if name != NIRCAM_SECTION and not BAND_PATTERN.fullmatch(name):
            raise CeersError(f"{path}: unknown band section [{section}] (expected [nircam] or a "
                             "filter such as [f606w])")
        values = {}
        for key, text in parser.items(section):
            convert = BandParams.CONVERTERS.get(key)
            if convert is None:
                raise CeersError(f"{path} [{section}]: unknown key {key!r}; known: "
                                 f"{', '.join(BandParams.CONVERTERS)}")
            try:
                values[key] = convert(text)
            except ValueError:
                raise CeersError(f"{path} [{section}]: {key} = {text!r} is not a "
                                 f"{convert.__name__.strip('_')}") from None
        try:
            band = BandParams(**values)
            band.mask_params()
        except ValueError as err:
            raise CeersError(f"{path} [{section}]: {err}") from None
        bands[name] = band
    return bands


def band_params(bands, band, nircam, path, config):
    """The parameters of a mosaic: its band's section, else (NIRCam only) ``[nircam]``."""
    band = band.lower()
    if band in bands:
        return bands[band]
    if nircam and NIRCAM_SECTION in bands:
        return bands[NIRCAM_SECTION]
    if nircam and not bands:
        return BandParams()
    raise CeersError(f"{config}: no [{band}] section for {path} (sections: "
                     f"{', '.join(sorted(bands)) or 'none'})")


def band_of(header):
    """A mosaic's band from its primary header: FILTER, or ACS's FILTER1/FILTER2 not CLEAR."""
    for key in ("FILTER", "FILTER1", "FILTER2"):
        value = str(header.get(key, "")).strip()
        if value and not value.upper().startswith("CLEAR") and value.upper() != "N/A":
            return value.lower()
    return ""


# --------------------------------------------------------------------------
# arrays


def covered_box(usable, margin=0):
    """Slices of the smallest box holding every ``usable`` pixel (plus ``margin``)."""
    rows = np.flatnonzero(usable.any(axis=1))
    cols = np.flatnonzero(usable.any(axis=0))
    if rows.size == 0:
        return None
    ny, nx = usable.shape
    return (slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, ny)),
            slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, nx)))


def first_background(image, off, band):
    """Tiered source mask and first background of a mosaic.

    ``off`` marks the mosaic's empty pixels. The band's polynomial sky
    surface is taken out first and added back to the background, so the
    mask does not follow a sky gradient. Returns (background, bits) on the
    whole grid (background NaN off the images; bits: bit 0 empty, bit k the
    k-th tier).
    """
    box = covered_box(~off)
    if box is None:
        raise CeersError("the mosaic holds no data")
    bits = np.full(image.shape, 1, dtype=np.uint8)
    bkg = np.full(image.shape, np.nan, dtype=np.float32)
    sub, sub_off = np.asarray(image[box], dtype=np.float32), off[box]
    surface = band.surface(sub, sub_off)
    flat = sub - surface
    bits[box] = tiered_source_mask(flat, sub_off, band.mask_params())
    model, _ = band.background(flat, bits[box] != 0)
    bkg[box] = np.where(sub_off, np.nan, model + surface)
    return bkg, bits


def merge_masks(bit_images):
    """One mask from the source bits (bits 1...) of every band's tiered mask: bit i of the
    result is set where the i-th band masks a source (uint16, up to 16 bands)."""
    if len(bit_images) > 16:
        raise CeersError("at most 16 mosaics can be merged")
    merged = np.zeros(bit_images[0].shape, dtype=np.uint16)
    for i, bits in enumerate(bit_images):
        merged |= tier_sources(bits).astype(np.uint16) << np.uint16(i)
    return merged


def final_background(image, off, merged, band):
    """Background2D of a mosaic with the merged mask and its own empty pixels left out.

    With ``halo_iterations`` (DR0.5: 0), the light the masked sources spread
    beyond the mask is fitted and taken out of the image the background is
    measured on, then the sky surface and the background are measured again;
    the subtracted background is the sky alone, while the mosaic keeps all
    of its sources' light. Where the fitted halo averages more than
    ``halo_mask`` times the background RMS over a background box, the mask
    grows by that box (BKGMASK bit ``HALO``): a halo is a radial average, and
    the outskirts of elongated or lopsided sources stand well above it in
    places. Returns (background, BKGMASK bits, the
    last :class:`~ceers_nircam.background.SourceHalo` or None).
    """
    box = covered_box(~off)
    sub_off = off[box]
    sources = merged[box] != 0
    masked = sources | sub_off
    bkg = np.full(image.shape, np.nan, dtype=np.float32)
    sub = np.asarray(image[box], dtype=np.float32)
    halo, cache, grown = None, {}, np.zeros(sub.shape, bool)
    with ThreadPoolExecutor(max_workers=1) as ahead:
        # The halo fit's ring transforms do not depend on the image: made while the first
        # background is.
        made = (ahead.submit(ring_spectra, sub.shape, band.halo_edges, cache)
                if band.halo_iterations else None)
        surface = band.surface(sub, masked)
        model, rms = band.background(sub - surface, masked, want_rms=True)
    if made is not None:
        made.result()
    for _ in range(band.halo_iterations):
        # The first fit measures the flux under the mask above the smooth surface alone: the
        # small-box background is raised next to the sources by the very halos being fitted.
        halo = band.halo(sub, sources, ~sub_off, (model if halo is not None else 0) + surface,
                         surface, cache)
        if band.halo_mask > 0:
            grown = bright_halo_boxes(halo.image, rms, band.halo_mask, band.bg_box_size) & ~masked
        clean = sub - halo.image
        surface = band.surface(clean, masked | grown)
        model, _ = band.background(clean - surface, masked | grown)
        del clean
    del cache
    if halo is not None:
        outside = ~masked
        log.info("source halos: ring weights %s; beyond the mask they hold %.3g on average; "
                 "%.1f%% of the mosaic masked where they exceed %g background RMS",
                 ", ".join(f"{w:.3g}" for w in halo.weights), float(halo.image[outside].mean()),
                 100 * grown[~sub_off].mean(), band.halo_mask)
    bkg[box] = np.where(sub_off, np.nan, model + surface)
    bkgmask = (off * np.uint8(OFF_DETECTOR)) | ((merged != 0) * np.uint8(SOURCES))
    bkgmask[box] |= grown * np.uint8(HALO)
    return bkg, bkgmask.astype(np.uint8), halo


def bright_halo_boxes(halo, rms, level, box):
    """Background boxes (``box`` pixels, on the grid Background2D uses) where the fitted halo
    averages more than ``level`` times the background RMS.

    Whole boxes: a threshold on single pixels moves its edge with the smallest change of the
    fit, and each such flip moves the boxes it touches in or out of Background2D's share of
    masked pixels; a box either in or out is the same in both cases.
    """
    ny, nx = halo.shape
    bright = block_reduce(halo, box, np.mean) > level * block_reduce(rms, box, np.mean)
    return np.repeat(np.repeat(bright, box, 0), box, 1)[:ny, :nx]


def source_pixels(bkgmask):
    """Pixels the final background left out as source light (merged mask and halo bits)."""
    return (np.asarray(bkgmask) & (SOURCES | HALO)) != 0


# --------------------------------------------------------------------------
# options and files


@dataclasses.dataclass(frozen=True)
class MosaicBackgroundParams:
    """Options of stage3/mosaic_background.py."""

    pointing: str = option("", "the pointing, e.g. nircam1 (required): every mosaic must be on "
                               "its grid")
    config: str = option("", "per-band parameters in CEERS's INI format ([nircam] and HST band "
                             "sections; default: DR0.5's NIRCam values for every NIRCam mosaic)")
    hst: tuple = option((), "HST mosaics on the same grid, whose masks join the merged mask",
                        nargs="+", type=str)
    output_dir: str = option("", "where products go (default: the first mosaic's directory)")
    merged_mask: str = option("merged_mask.fits", "file name of the merged mask in --output_dir")
    no_png: bool = option(False, "do not write the PNG previews")
    overwrite: bool = option(False, "redo a pointing whose products are complete")
    aperture_radii: tuple = option((1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0),
                                   "radii (mosaic pixels) of the empty apertures whose noise over "
                                   "ERR's prediction goes to the APERNOISE table of _mbkgsub1 "
                                   "(not in DR0.5; give none for no table)", nargs="*", type=float)
    err_radius: float = option(0.0, "rescale ERR (and the VAR_ arrays) so that it predicts the "
                                    "noise of empty apertures of this radius (mosaic pixels, "
                                    "within --aperture_radii; not in DR0.5; 0: ERR as drizzled)")


def output_path(path, suffix, output_dir):
    """``<dir>/<stem>_<suffix>.fits`` of a mosaic (``_i2d``, ``_drz``, ``_sci`` dropped)."""
    stem = os.path.basename(path)
    stem = re.sub(r"(_i2d|_drz|_drc|_sci)?\.fits(\.gz)?$", "", stem)
    return os.path.join(output_dir, f"{stem}_{suffix}.fits")


@dataclasses.dataclass
class MosaicFile:
    """A mosaic to process: its path, band, whether NIRCam, and its parameters."""

    path: str
    band: str
    nircam: bool
    params: BandParams = None
    grid: object = None


def science_hdu(hdul):
    """The science image of a mosaic: the SCI extension, else the first image with data."""
    names = [h.name.upper() for h in hdul]
    if "SCI" in names:
        return hdul["SCI"]
    for hdu in hdul:
        if hdu.data is not None and getattr(hdu.data, "ndim", 0) == 2:
            return hdu
    raise CeersError(f"{hdul.filename()}: no 2D image")


def read_mosaic(path):
    """(data float32, empty-pixel mask) of a mosaic: NaN, or zero weight (WHT) where it has one."""
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        sci = science_hdu(hdul)
        data = np.array(sci.data, dtype=np.float32)
        off = ~np.isfinite(data)
        names = [h.name.upper() for h in hdul]
        if "WHT" in names:
            off |= ~(np.asarray(hdul["WHT"].data) > 0)
        elif not off.any():
            off |= data == 0  # HST drizzle products fill empty pixels with 0
    return data, off


def write_bkgsub(path, source, image, bkg, bits, entry):
    """``_bkgsub1.fits``: the mosaic less its first background (SCI), the background (BKGD)
    and the tier bits (BKGMASK), under the mosaic's primary header."""
    from astropy.io import fits

    from ..fitsio import write_hdulist

    header = fits.getheader(source, 0)
    header["HISTORY"] = entry
    with np.errstate(invalid="ignore"):
        sub = (image - bkg).astype(np.float32)
    return write_hdulist(fits.HDUList([
        fits.PrimaryHDU(header=header), fits.ImageHDU(sub, name="SCI"),
        fits.ImageHDU(bkg, name="BKGD"), fits.ImageHDU(bits, name="BKGMASK")]), path)


def aperture_noise_curve(hdul, bkgmask, radii):
    """Empty-aperture noise over ERR's prediction on a background-subtracted mosaic, at
    ``radii``, outside the sources and empty pixels of ``bkgmask``; None without radii or
    without an ERR extension (HST mosaics)."""
    if not radii or "ERR" not in [h.name.upper() for h in hdul]:
        return None
    excluded = (np.asarray(bkgmask) & (OFF_DETECTOR | SOURCES | HALO)) != 0
    box = covered_box(~excluded) or (slice(None), slice(None))
    image = science_hdu(hdul).data[box]
    return apertures.noise_curve(image, hdul["ERR"].data[box], excluded[box], radii)


# The variances whose sum is ERR squared in a jwst mosaic.
VARIANCES = ("VAR_RNOISE", "VAR_POISSON", "VAR_FLAT")


def rescale_err(hdul, curve, radius):
    """Multiply ERR by the curve's ratio at ``radius`` (the VAR_ arrays by its square), so
    that the quadrature sum of ERR over an empty aperture of that radius is its noise.
    Records ERRSCALE and ERRRAD in ERR's header; returns the curve for the new ERR.

    The factor is one number per mosaic: apertures much smaller or larger than ``radius``
    keep the part of the correlated noise that depends on size (the rest of the curve)."""
    mosaic = os.path.basename(hdul.filename() or "mosaic")
    factor = apertures.ratio_at(curve, radius)
    if not np.isfinite(factor) or factor <= 0:
        log.warning("%s: no empty apertures to rescale ERR by; ERR left as drizzled", mosaic)
        factor = 1.0
    names = [h.name.upper() for h in hdul]
    for name in ("ERR",) + VARIANCES:
        if name in names:
            power = 1 if name == "ERR" else 2
            hdul[name].data = (np.asarray(hdul[name].data, dtype=np.float32)
                               * np.float32(factor ** power))
    hdul["ERR"].header["ERRSCALE"] = (factor, "ERR times this (VAR_ arrays times its square)")
    hdul["ERR"].header["ERRRAD"] = (radius, "[pixel] aperture radius ERRSCALE fits")
    log.info("%s: ERR times %.4f, for empty apertures of radius %g pixels", mosaic, factor,
             radius)
    return apertures.rescaled(curve, factor)


def err_radius_of(hdul):
    """The aperture radius a product's ERR was rescaled for (0: as drizzled)."""
    names = [h.name.upper() for h in hdul]
    return float(hdul["ERR"].header.get("ERRRAD", 0.0)) if "ERR" in names else 0.0


def write_subtracted(path, source, bkg, bkgmask, entry, radii=(), err_radius=0.0):
    """``_mbkgsub1.fits``: the whole mosaic file with the background subtracted from SCI and
    BKGD and BKGMASK appended (the other extensions copied as they are), and the APERNOISE
    table of :func:`aperture_noise_curve` at ``radii``; with ``err_radius``, ERR rescaled by
    :func:`rescale_err` and the table for the new ERR. Returns the curve (None without)."""
    from astropy.io import fits

    from ..fitsio import write_hdulist

    with fits.open(source, memmap=True) as hdul:
        sci = science_hdu(hdul)
        with np.errstate(invalid="ignore"):
            sci.data = (np.asarray(sci.data, dtype=np.float32) - bkg).astype(np.float32)
        hdul[0].header["HISTORY"] = entry
        curve = aperture_noise_curve(hdul, bkgmask, radii)
        if curve is not None and err_radius:
            curve = rescale_err(hdul, curve, err_radius)
        extra = [fits.ImageHDU(bkg, name="BKGD"), fits.ImageHDU(bkgmask, name="BKGMASK")]
        if curve is not None:
            extra.append(apertures.curve_hdu(curve))
        write_hdulist(fits.HDUList([h for h in hdul] + extra), path)
    return curve


def write_merged(path, merged, names, entry):
    """The merged mask (MASK: bit i = the i-th mosaic masks a source; BAND<i> names them)."""
    from astropy.io import fits

    from ..fitsio import write_hdulist

    header = fits.Header()
    for i, name in enumerate(names):
        header[f"BAND{i}"] = (name, f"bit {i}: mosaic masking a source")
    primary = fits.PrimaryHDU()
    primary.header["HISTORY"] = entry
    return write_hdulist(fits.HDUList([primary, fits.ImageHDU(merged, header, name="MASK")]), path)


def preview(path, image, off, masked, title, max_size=1600):
    """PNG of a mosaic (asinh stretch) with its source mask in red and empty pixels in grey."""
    from .. import figures
    from ..masking import block_reduce

    step = max(1, int(np.ceil(max(image.shape) / max_size)))
    with warnings.catch_warnings():  # blocks wholly off the images have no mean
        warnings.simplefilter("ignore", RuntimeWarning)
        small = block_reduce(np.where(off, np.nan, image), step, np.nanmean) if step > 1 else image
    small_mask = block_reduce(masked.astype(np.float32), step, np.mean) if step > 1 else masked
    small_off = block_reduce(off.astype(np.float32), step, np.mean) > 0.5 if step > 1 else off
    good = np.isfinite(small) & ~small_off
    lo, hi = np.nanpercentile(small[good], [1, 99.5]) if good.any() else (0, 1)
    scale = max(hi - lo, 1e-12)
    shown = np.arcsinh(np.clip((small - lo) / scale, 0, 1) * 10) / np.arcsinh(10)
    fig, ax = figures.pyplot().subplots(figsize=(10, 10 * small.shape[0] / small.shape[1] + 0.6))
    ax.imshow(np.where(good, shown, np.nan), origin="lower", cmap="gray_r", interpolation="nearest")
    overlay = np.zeros(small.shape + (4,))
    overlay[..., 0] = 1.0
    overlay[..., 3] = 0.35 * np.clip(small_mask, 0, 1)
    overlay[small_off] = (0.6, 0.6, 0.6, 1.0)
    ax.imshow(overlay, origin="lower", interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return figures.save(fig, path)


def timed(log_line, t0):
    """Log ``log_line`` with the seconds since ``t0``; return now."""
    now = time.perf_counter()
    log.info("%s (%.1f s)", log_line, now - t0)
    return now


def check_inputs(nircam_paths, params):
    """Every mosaic of a run, checked before anything is written: readable, NIRCam (or given
    as HST), a band with parameters, all on one grid, and that grid the pointing's."""
    from astropy.io import fits

    from .. import history, survey
    from ..fitsio import check_fits, require_nircam
    from . import mosaic
    from .associations import pointing_number

    if not params.pointing:
        raise CeersError("missing required option --pointing")
    if any(not r > 0 for r in params.aperture_radii):
        raise CeersError(f"--aperture_radii must be positive (got {params.aperture_radii})")
    if params.err_radius < 0:
        raise CeersError(f"--err_radius must be positive, or 0 for ERR as drizzled (got "
                         f"{params.err_radius:g})")
    if params.err_radius and not params.aperture_radii:
        raise CeersError("--err_radius needs --aperture_radii: ERR's factor is read off their "
                         "empty-aperture curve")
    if params.err_radius and not (min(params.aperture_radii) <= params.err_radius
                                  <= max(params.aperture_radii)):
        raise CeersError(f"--err_radius {params.err_radius:g} lies outside --aperture_radii "
                         f"({min(params.aperture_radii):g} to {max(params.aperture_radii):g})")
    pointing = f"nircam{pointing_number(params.pointing)}"
    if pointing not in survey.MOSAIC_GRIDS:
        raise CeersError(f"pointing {params.pointing}: no DR0.5 grid (known: nircam1, nircam2, "
                         "nircam3, nircam6)")
    bands = read_config(params.config) if params.config else {}
    found = []
    for path, nircam in [(p, True) for p in nircam_paths] + [(p, False) for p in params.hst]:
        header = check_fits(path, ["SCI", "WHT"] if nircam else ())
        if nircam:
            require_nircam(header, path)
        if history.already_done(path, "mosaic_background"):
            raise CeersError(f"{path}: already background-subtracted (a mosaic_background "
                             "product); give the _i2d.fits mosaic")
        band = band_of(header)
        if not band:
            raise CeersError(f"{path}: no FILTER in the primary header")
        with fits.open(path, memmap=True) as hdul:
            sci_header = science_hdu(hdul).header
            try:
                grid = mosaic.grid_of_header(sci_header)
            except CeersError as err:
                raise CeersError(f"{path}: {err}") from None
        if nircam:
            mosaic.check_pointing(grid, pointing, path)
        found.append(MosaicFile(path, band, nircam, band_params(bands, band, nircam, path,
                                                                params.config), grid))
    first = found[0]
    for m in found[1:]:
        if not mosaic.same_grid(first.grid, m.grid):
            raise CeersError(f"{m.path}: pixel grid differs from that of {first.path}")
    return found


def complete(products, merged_path, step, radii=(), err_radius=0.0):
    """True if the merged mask and every product exist and carry the step's history entry,
    and, with ``radii``, every NIRCam ``_mbkgsub1`` its APERNOISE table (a product of a
    version without it is redone) and its ERR rescaled for ``err_radius`` (0: not at all)."""
    from astropy.io import fits

    from .. import history

    paths = [merged_path] + [p for outs in products.values() for p in outs.values()]
    if not all(os.path.exists(p) and history.already_done(p, step) for p in paths):
        return False
    for outs in products.values():
        with fits.open(outs["mbkgsub1"]) as hdul:
            names = [h.name.upper() for h in hdul]
            rescaled_for = err_radius_of(hdul)
        if radii and "ERR" in names and "APERNOISE" not in names:
            return False
        if "ERR" in names and rescaled_for != err_radius:
            return False
    return True
