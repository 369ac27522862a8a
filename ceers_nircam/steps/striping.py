"""1/f noise (striping) removal from a rate image.

The readout electronics add 1/f noise that, after ramp fitting, appears as
stripes along the fast-read rows: a pattern per amplifier (each reads its
own 512 columns) plus a weaker column pattern. CEERS measures both on a
flat-fielded copy with sources masked and subtracts them from the original:

1. flat-field a copy (CRDS flat); mask DQ > 0 pixels and sources (the tiered
   source mask, :func:`ceers_nircam.masking.tiered_source_mask`);
2. subtract the sky pedestal (Gaussian fit to the histogram);
3. row pattern: per amplifier, the 2-sigma-clipped median of each row's
   unmasked pixels; where more than ``thresh`` of an amplifier-row is masked
   (a large galaxy, a bright star), the whole row's value instead;
4. column pattern: the clipped median of each column after step 3;
5. (not in DR0.5) along-row variation: the 1/f noise also changes within
   the few milliseconds an amplifier takes to read a row, so what steps 3-4
   leave still correlates pixels along rows over tens of pixels (the noise
   of a 6 x 6 box comes out 1.7 times that of independent pixels on the
   simulated short-wave data). Per amplifier-row, the clipped value of every
   ``segment``-pixel piece of what is left, interpolated linearly between
   piece centres, is taken out too; a piece with fewer than a quarter of its
   pixels unmasked contributes 0;
6. (not in DR0.5) before steps 3-5 are repeated, the light sources spread
   beyond their mask (:func:`ceers_nircam.background.source_halo`) is
   fitted and left out of the measurement, not of the image: a row half
   masked by a large galaxy keeps the galaxy's faint outskirts, which its
   value would otherwise take for a stripe;
7. subtract the patterns from the original image; pixels exactly 0 stay 0;
   rows or columns with no unmasked pixel become 0 with DO_NOT_USE.
"""

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from astropy.io import fits
from stdatamodels.jwst.datamodels import dqflags

from .. import nircam
from ..background import (EXPOSURE_HALO_EDGES, clipped_stats, pedestal, ring_spectra,
                          source_halo)
from ..cli import CeersError, get_logger, option
from ..fitsio import write_images
from ..masking import (SourceMaskParams, dq_mask, tier_sources, tiered_source_mask,
                       upsample_axis)
from . import Status

log = get_logger("striping")

DO_NOT_USE = dqflags.pixel["DO_NOT_USE"]


@dataclasses.dataclass(frozen=True)
class StripingParams:
    """Parameters of the 1/f step (defaults: DR0.5)."""

    thresh: float = option(0.8, "masked fraction of an amplifier-row above which the full-row "
                                "value is used (DR0.5: 0.8; 0.1-0.2 for long-wave or crowded images)")
    save_patterns: bool = option(False, "save the row and column patterns as _rate_horiz.fits "
                                        "(with the along-row part as ALONG) and _rate_vert.fits")
    remake_mask: bool = option(False, "make a new source mask even if _rate_1fmask.fits exists")
    clip_sigma: float = option(2.0, "sigma clipping of the row and column values")
    clip_iters: int = option(5, "clipping iterations")
    clip_std: str = option("robust", "sigma for clipping: 'robust' (16-84 percentile range) or "
                                     "'std' (DR0.5)", choices=("robust", "std"))
    statistic: str = option("mean", "row and column value: 'mean' of the clipped pixels or "
                                    "'median' (DR0.5)", choices=("mean", "median"))
    pattern_iters: int = option(2, "row/column iterations (1: DR0.5)")
    mask_destriped: bool = option(True, "make the source mask on a copy from which a first "
                                        "estimate of the patterns is removed (DR0.5 did not: "
                                        "strong stripes are then masked as sources)")
    segment: int = option(64, "length (pixels) of the row pieces whose residual is also taken out, "
                              "following the 1/f noise along each amplifier-row (0: DR0.5, whole "
                              "rows only)")
    halo_iterations: int = option(1, "fit the light sources spread beyond the source mask "
                                     "(ring kernels on the masked flux) and leave it out of the row "
                                     "and column values, this many times (0: DR0.5, the row "
                                     "values take the outskirts of large sources for stripes)")
    halo_edges: tuple = option(EXPOSURE_HALO_EDGES, "edges (pixels) of the rings of the halo fit",
                               nargs="+", type=float)
    pedestal_halfwidth: float = option(0.0, "fit the pedestal histogram only within this many "
                                            "half-maximum widths of its peak (0: whole histogram)")
    plot: bool = option(False, "save a QA figure <rate>_1f.png: the row and column patterns and "
                               "the image before and after")


@dataclasses.dataclass(frozen=True)
class PatternStats:
    """How a row or column value is estimated from its unmasked pixels."""

    sigma: float = 2.0
    maxiters: int = 5
    statistic: str = "mean"  # of the clipped pixels; "median" as in DR0.5
    clip_std: str = "robust"  # "std" as in DR0.5 (astropy's default)

    def __call__(self, values, masked):
        mean, median, _ = clipped_stats(values, masked, self.sigma, self.maxiters, self.clip_std)
        return mean if self.statistic == "mean" else median


def measure_patterns(image, masked, noutputs=nircam.NAMPS, thresh=0.8, stats=PatternStats(),
                     iterations=2):
    """Row (per amplifier) and column patterns of a pedestal-subtracted image.

    The first iteration is the CEERS sequence (rows, then columns of what
    rows leave); later ones re-measure the rows after removing the columns
    and vice versa, because where sources mask part of a row its value also
    picks up the column pattern of the pixels it happens to keep.

    Returns a dict: ``rows`` (noutputs, ny) the row values used,
    ``amp_rows`` the per-amplifier values, ``full_rows`` (ny) the whole-row
    values (NaN where no amplifier needed them), ``fallback`` (noutputs, ny)
    where the full row was used,
    ``masked_fraction`` (noutputs, ny), ``cols`` (nx), and the 2D ``horiz``
    and ``vert`` images. NaN where no pixel was usable.
    """
    ny, nx = image.shape
    width = nx // noutputs
    per_amp_masked = masked.reshape(ny, noutputs, width)
    fraction = per_amp_masked.mean(axis=2).T
    cols = np.zeros(nx, dtype=np.float32)
    for _ in range(max(1, iterations)):
        with np.errstate(invalid="ignore"):
            rest = image - cols[None, :]
        rest_masked = masked | ~np.isfinite(rest)
        amp_rows = stats(rest.reshape(ny, noutputs, width), rest_masked.reshape(ny, noutputs, width)).T
        # An amplifier-row with nothing left unmasked falls back too, whatever the threshold.
        fallback = (fraction > thresh) | ~np.isfinite(amp_rows)
        full_rows = np.full(ny, np.nan)
        need = fallback.any(axis=0)  # whole-row values only where some amplifier uses them
        if need.any():
            full_rows[need] = stats(rest[need], rest_masked[need])
        rows = np.where(fallback, full_rows[None, :], amp_rows)
        horiz = np.repeat(rows.T, width, axis=1).astype(np.float32)
        with np.errstate(invalid="ignore"):
            rest = image - horiz
        cols = stats(rest.T, (masked | ~np.isfinite(rest)).T).astype(np.float32)
    vert = np.broadcast_to(cols[None, :], image.shape)
    return {"rows": rows, "amp_rows": amp_rows, "full_rows": full_rows, "fallback": fallback,
            "masked_fraction": fraction, "cols": cols, "horiz": horiz, "vert": vert}


def along_rows(rest, masked, noutputs=nircam.NAMPS, segment=64, stats=PatternStats(),
               min_share=0.25):
    """The along-row variation of what the row and column patterns leave.

    Every amplifier-row is cut into pieces of ``segment`` pixels; each
    piece's clipped value (of its unmasked pixels; 0 where fewer than
    ``min_share`` of them are unmasked) is placed at the piece's centre and
    interpolated linearly in between, constant beyond the first and last
    centres, never across amplifiers. Returns (2D image, piece values of
    shape (ny, noutputs, pieces)).
    """
    ny, nx = rest.shape
    width = nx // noutputs
    pieces = max(1, width // segment)
    seglen = width // pieces
    used = pieces * seglen
    cut = np.asarray(rest, dtype=np.float32).reshape(ny, noutputs, width)[..., :used]
    off = (masked | ~np.isfinite(rest)).reshape(ny, noutputs, width)[..., :used]
    cut = cut.reshape(ny, noutputs, pieces, seglen)
    off = off.reshape(ny, noutputs, pieces, seglen)
    values = stats(cut, off)
    enough = (~off).sum(axis=-1) >= min_share * seglen
    values = np.where(enough & np.isfinite(values), values, 0.0).astype(np.float32)
    image = upsample_axis(values, seglen, width, axis=-1)
    return image.reshape(ny, nx), values


def amplifier_rows(shape, noutputs=nircam.NAMPS):
    """Label image: the index of each pixel's amplifier-row (row * noutputs + amplifier)."""
    ny, nx = shape
    amp = np.arange(nx) // (nx // noutputs)
    return np.arange(ny)[:, None] * noutputs + amp[None, :]


def subtract_patterns(data, dq, pattern):
    """Original minus pattern; exact zeros stay 0; NaN pattern -> 0 and DO_NOT_USE.

    Returns (new data, new dq, number of pixels set to 0).
    """
    bad = ~np.isfinite(pattern)
    out = np.where(data == 0, data, data - np.where(bad, 0, pattern)).astype(data.dtype)
    out[bad] = 0
    dq = dq.copy()
    dq[bad] |= DO_NOT_USE
    return out, dq, int(bad.sum())


def _first_destriped(image, excluded, noutputs, stats):
    """The image minus a first estimate of its patterns, from every unflagged pixel.

    Stripes twice the pixel noise survive the mask's smoothing as long thin
    features that the tiers then mask, taking whole row segments out of the
    measurement; sources barely move this first estimate (the clipping
    drops most of their pixels).
    """
    rough = measure_patterns(image, excluded, noutputs, 1.0, stats, iterations=1)
    return image - (rough["horiz"] + rough["vert"])


def apply(model, params, flat, source_bits=None, mask_params=SourceMaskParams()):
    """Remove 1/f striping from a rate ImageModel (in place).

    ``flat`` is the CRDS flat; ``source_bits`` a tiered source mask to reuse
    (made here if None). The mask and the patterns are returned in
    ``status.products``.
    """
    t0 = time.perf_counter()
    data = model.data
    excluded = dq_mask(model.dq) | ~np.isfinite(data) | ~np.isfinite(flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        image = np.where(excluded, np.nan, data / flat).astype(np.float32)
    noutputs = model.meta.exposure.noutputs or nircam.NAMPS
    stats = PatternStats(params.clip_sigma, params.clip_iters, params.statistic, params.clip_std)
    rings = {}
    with ThreadPoolExecutor(max_workers=1) as ahead:
        # The halo fit's ring transforms do not depend on the image: made while the mask is.
        made = (ahead.submit(ring_spectra, image.shape, params.halo_edges, rings)
                if params.halo_iterations else None)
        if source_bits is None:
            source_bits = tiered_source_mask(_first_destriped(image, excluded, noutputs, stats)
                                             if params.mask_destriped else image, excluded,
                                             mask_params)
    if made is not None:
        made.result()
    masked = excluded | (source_bits != 0)
    t_mask = time.perf_counter() - t0
    sky, method = pedestal(image[~masked], fit_halfwidth=params.pedestal_halfwidth or None)
    image = image - np.float32(sky)
    # Before a halo fit the patterns only clean the masked flux it starts from: one pass of
    # rows and columns does, and the patterns are measured in full after the fit.
    patterns = measure_patterns(image, masked, noutputs, params.thresh, stats,
                                1 if params.halo_iterations else params.pattern_iters)
    clean, halo = image, None
    for _ in range(params.halo_iterations):
        # The halo is fitted on the image without the current patterns (stripes under the
        # mask would otherwise enter the masked flux), with a free offset for every
        # amplifier-row and column: the rows and columns through a large source took part
        # of its halo, which a fit of what they left would miss. The patterns are then
        # measured again without the halo.
        with np.errstate(invalid="ignore"):
            rest = image - (patterns["horiz"] + patterns["vert"])
        rest[~np.isfinite(rest)] = 0
        columns = np.broadcast_to(np.arange(image.shape[1]), image.shape)
        halo = source_halo(rest, tier_sources(source_bits), ~excluded, 0.0,
                           np.zeros(image.shape, np.float32), params.halo_edges, stride=3,
                           cache=rings, offsets=(amplifier_rows(image.shape, noutputs), columns))
        clean = image - halo.image
        # The pedestal above was measured with the halo light in the unmasked pixels; the
        # patterns of what the halo leaves would take that light's mean with them and put
        # it back into the image as a constant. The step keeps the sky level as it found it.
        shift, _ = pedestal(clean[~masked], fit_halfwidth=params.pedestal_halfwidth or None)
        clean = clean - np.float32(shift)
        patterns = measure_patterns(clean, masked, noutputs, params.thresh, stats,
                                    params.pattern_iters)
    pattern = patterns["horiz"] + patterns["vert"]
    if params.segment:
        with np.errstate(invalid="ignore"):
            rest = clean - pattern
        patterns["along"], _ = along_rows(rest, masked, noutputs, params.segment, stats)
        pattern = pattern + patterns["along"]
    model.data, model.dq, nzero = subtract_patterns(data, model.dq, pattern)
    seconds = time.perf_counter() - t0
    nfall = int(patterns["fallback"].sum())
    log.info("1/f: %.1f%% of pixels masked, pedestal %.5f (%s), %d amplifier-rows on the full "
             "row, %d pixels set to 0 (%.2f s, mask %.2f s)", 100 * masked.mean(), sky, method,
             nfall, nzero, seconds, t_mask)
    values = {"pedestal": sky, "pedestal_method": method, "fallback_rows": nfall,
              "zeroed": nzero, "masked_fraction": float(masked.mean()), "seconds": seconds}
    if halo is not None:
        log.info("1/f: source halos left out of the patterns, ring weights %s (edges %s px)",
                 ", ".join(f"{w:.3g}" for w in halo.weights),
                 ", ".join(f"{e:g}" for e in halo.edges))
    patterns["halo"] = halo
    return model, Status(True, "striping removed", values=values,
                         products={"mask": source_bits, **patterns})


# --------------------------------------------------------------------------
# products


def write_mask(path, bits, params=SourceMaskParams()):
    """Save a tiered source mask (MASK extension, uint8 bits described in the header)."""
    hdr = fits.Header()
    hdr["BIT0"] = ("excluded", "flagged in DQ, NaN, or no flat")
    tiers = zip(params.smooth_sigmas, params.nsigmas, params.min_areas, params.dilations)
    for k, (sigma, nsigma, area, grow) in enumerate(tiers, start=1):
        hdr[f"BIT{k}"] = (f"tier {k}", f"sigma {sigma}, {nsigma} sig, area {area}, grow {grow}")
    hdr["RINGRAD"] = (params.ring_radius, "ring median radius (pixels)")
    hdr["RINGWID"] = (params.ring_width, "ring median width (pixels)")
    return write_images(path, {"MASK": bits.astype(np.uint8)}, {"MASK": hdr})


def read_mask(path, shape):
    """A saved source mask (bits; nonzero = masked)."""
    try:
        bits = fits.getdata(path, "MASK")
    except (OSError, KeyError, ValueError) as err:
        raise CeersError(f"{path}: not a readable source mask ({err}); remove it or use "
                         "--remake_mask") from None
    if bits.shape != shape:
        raise CeersError(f"{path}: mask shape {bits.shape} differs from the image {shape}; "
                         "remove it or use --remake_mask")
    return bits.astype(np.uint8)


def write_patterns(stem, products):
    """Save the row pattern (``stem``_horiz.fits) and column pattern (``stem``_vert.fits)."""
    horiz = {"PATTERN": products["horiz"].astype(np.float32),
             "ROWS": np.asarray(products["rows"], np.float32),
             "AMPROWS": np.asarray(products["amp_rows"], np.float32),
             "FULLROWS": np.asarray(products["full_rows"], np.float32),
             "FALLBACK": products["fallback"].astype(np.uint8),
             "MASKFRAC": np.asarray(products["masked_fraction"], np.float32)}
    if "along" in products:
        horiz["ALONG"] = products["along"].astype(np.float32)
    vert = {"PATTERN": np.ascontiguousarray(products["vert"], np.float32),
            "COLS": np.asarray(products["cols"], np.float32)}
    return write_images(stem + "_horiz.fits", horiz), write_images(stem + "_vert.fits", vert)


def plot_patterns(path, before, after, products, title):
    """QA figure: the row pattern of each amplifier and the column pattern, and the
    image before and after (binned 4x4, same display range)."""
    from .. import figures
    from ..masking import block_reduce

    plt = figures.pyplot()
    fig = plt.figure(figsize=(14, 8))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.3])
    rx, cx = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    rows = np.atleast_2d(products["rows"])
    for amp, pattern in enumerate(rows):
        rx.plot(pattern, lw=0.5, label=f"amplifier {amp + 1}")
    rx.set_xlabel("row")
    rx.set_ylabel("row value (flat-fielded DN/s)")
    rx.set_title(f"row pattern per amplifier ({int(products['fallback'].sum())} amplifier-rows "
                 "from the full row)", fontsize=9)
    rx.legend(fontsize=7, ncol=4)
    cx.plot(np.asarray(products["cols"]), lw=0.5, color="tab:purple")
    cx.set_xlabel("column")
    cx.set_ylabel("column value")
    cx.set_title("column pattern", fontsize=9)
    small = [block_reduce(np.where(a != 0, a, np.nan).astype(np.float32), 4, np.nanmedian)
             for a in (before, after)]
    vmin, vmax = figures.limits(small[0], 5, 95)
    for i, (image, label) in enumerate(zip(small, ("before", "after"))):
        figures.show(fig.add_subplot(grid[1, i]), image, f"{label} (4x4 median)", vmin=vmin,
                     vmax=vmax)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figures.save(fig, path)
