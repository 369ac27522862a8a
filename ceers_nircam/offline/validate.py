"""Compare calibrated products with the simulator's truth.

Used by the tests and by the demo's validation report, so both judge the
reduction by the same measurements.
"""

import numpy as np
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from stdatamodels.jwst.datamodels import dqflags

from ..nircam import wisp_region_mask
from . import instrument as inst

DO_NOT_USE = dqflags.pixel["DO_NOT_USE"]


def source_footprint(shape, sources, pad=2):
    """Boolean image, True inside every source's rendered stamp (plus ``pad``)."""
    mask = np.zeros(shape, dtype=bool)
    for s in sources:
        half = int(s["halfsize"]) + pad
        if half <= pad:
            continue
        xi, yi = int(round(s["x"])), int(round(s["y"]))
        mask[max(0, yi - half):max(0, yi + half + 1), max(0, xi - half):max(0, xi + half + 1)] = True
    return mask


def measure_sky(image, dq, sources, exclude=None):
    """Sigma-clipped median of good pixels outside every source stamp."""
    good = (dq & DO_NOT_USE) == 0
    good &= ~source_footprint(image.shape, sources)
    good &= np.isfinite(image)
    if exclude is not None:
        good &= ~exclude
    _, median, _ = sigma_clipped_stats(image[good], sigma=3.0, maxiters=10)
    return float(median)


def isolated_stars(sources, shape, mag_range=(19.5, 23.5), contrast=5.0, edge=8):
    """Indices of point sources whose stamp meets no stamp of a source less than
    ``contrast`` magnitudes fainter, and lies wholly on the detector."""
    stars = np.flatnonzero((sources["kind"] == "star") & (sources["mag"] >= mag_range[0])
                           & (sources["mag"] <= mag_range[1]) & (sources["halfsize"] > 0))
    x, y = np.asarray(sources["x"]), np.asarray(sources["y"])
    half = np.asarray(sources["halfsize"]) + 2
    mag = np.asarray(sources["mag"])
    drawn = np.asarray(sources["halfsize"]) > 0
    keep = []
    for i in stars:
        lo, hi = edge + half[i], min(shape) - edge - half[i]
        if not (lo <= x[i] <= hi and lo <= y[i] <= hi):
            continue
        near = (drawn & (np.abs(x - x[i]) <= half + half[i]) & (np.abs(y - y[i]) <= half + half[i])
                & (mag < mag[i] + contrast))
        near[i] = False
        if not near.any():
            keep.append(i)
    return np.array(keep, dtype=int)


def star_photometry(image, dq, sources, pixar_sr, indices, core_radius=5.0):
    """Box photometry of stars (MJy) with a local sky from a surrounding ring.

    Unusable pixels in a star's wings (beyond ``core_radius`` pixels, where a
    pixel holds a negligible share of the light) count as sky; a star with an
    unusable pixel in its core is left out. Returns a Table of id, mag, true
    and measured flux and their ratio.
    """
    rows = []
    ny, nx = image.shape
    for i in indices:
        s = sources[i]
        half = int(s["halfsize"]) + 2
        outer = half + 12
        xi, yi = int(round(s["x"])), int(round(s["y"]))
        if xi - outer < 0 or yi - outer < 0 or xi + outer >= nx or yi + outer >= ny:
            continue
        cut = (slice(yi - outer, yi + outer + 1), slice(xi - outer, xi + outer + 1))
        stamp = image[cut].astype(np.float64)
        bad = ((dq[cut] & DO_NOT_USE) != 0) | ~np.isfinite(stamp)
        yy, xx = np.mgrid[cut[0], cut[1]]
        r = np.hypot(xx - s["x"], yy - s["y"])
        if bad[r <= core_radius].any():
            continue
        inner = (np.abs(xx - xi) <= half) & (np.abs(yy - yi) <= half)
        _, sky, _ = sigma_clipped_stats(stamp[~inner & ~bad], sigma=3.0)
        box = np.where(bad, sky, stamp)[inner]
        measured = float((box - sky).sum() * pixar_sr)
        rows.append((s["id"], s["mag"], s["flux_mjy"], measured, measured / s["flux_mjy"]))
    return Table(rows=rows, names=("id", "mag", "flux_true", "flux_measured", "ratio"),
                 dtype=(int, float, float, float, float))


def noise_ratio(residual, err, clip=6.0):
    """Spread of ``residual`` (measured minus noiseless truth) over the rms ERR.

    Compares the noise level with the mean variance the pipeline reports
    rather than pixel by pixel: where counts are low, each pixel's Poisson
    term comes from its own noisy slope, so single ratios scatter more than
    the noise level is off. ``clip`` (in rms ERR) drops cosmic-ray residues.
    """
    rms_err = np.sqrt(np.mean(np.square(err)))
    keep = np.abs(residual) < clip * rms_err
    return float(np.std(residual[keep]) / np.sqrt(np.mean(np.square(err[keep]))))


def wcs_offsets(wcs, sources):
    """Sky offsets (arcsec; dRA cos Dec, dDec) of the WCS at the true pixel positions."""
    ra, dec = wcs(np.asarray(sources["x"]), np.asarray(sources["y"]))
    dra = (ra - np.asarray(sources["ra"])) * np.cos(np.deg2rad(np.asarray(sources["dec"]))) * 3600
    ddec = (dec - np.asarray(sources["dec"])) * 3600
    return dra, ddec


def pixel_offsets(wcs, sources):
    """Pixel offsets of the truth sky positions through the WCS from their true pixels."""
    x, y = wcs.backward_transform(np.asarray(sources["ra"]), np.asarray(sources["dec"]))
    return x - np.asarray(sources["x"]), y - np.asarray(sources["y"])


def on_detector(sources, shape=(inst.NPIX, inst.NPIX), margin=0):
    """Rows of a truth source table whose true position lies on an image of ``shape``."""
    x, y = np.asarray(sources["x"]), np.asarray(sources["y"])
    ny, nx = shape
    inside = (x >= margin) & (x <= nx - 1 - margin) & (y >= margin) & (y <= ny - 1 - margin)
    return sources[inside]


def check_cal(cal_path, truth):
    """Measure one calibrated image against its truth: sky, star fluxes, WCS.

    ``truth`` is the dict of :func:`ceers_nircam.offline.simulate.read_truth`.
    Returns a dict of the measured quantities.
    """
    from stdatamodels.jwst import datamodels

    h = truth["header"]
    src = truth["sources"]
    with datamodels.ImageModel(cal_path) as cal:
        # The wisp is sky-like light the stage-1 wisp step removes; keep it out here.
        exclude = wisp_region_mask(h["DETECTOR"], inst.subarray_region(h["SUBARRAY"])) if h["WISPSCL"] else None
        sky = measure_sky(cal.data, cal.dq, src, exclude)
        phot = star_photometry(cal.data, cal.dq, src, cal.meta.photometry.pixelarea_steradians,
                               isolated_stars(src, cal.data.shape))
        onchip = on_detector(src, cal.data.shape)
        dx, dy = pixel_offsets(cal.meta.wcs, onchip)
    return {
        "image": h["ROOTNAME"],
        "sky_true": h["SKYMJYSR"],
        "sky_measured": sky,
        "sky_ratio": sky / h["SKYMJYSR"] if h["SKYMJYSR"] else np.nan,
        "nstars": len(phot),
        "flux_ratio": float(np.median(phot["ratio"])) if len(phot) else np.nan,
        "wcs_offset_pix": float(np.median(np.hypot(dx, dy))) if len(onchip) else np.nan,
    }


def format_report(rows, title, notes=()):
    """A Markdown table of :func:`check_cal` results, after any explanatory notes."""
    lines = [f"# {title}", ""] + [f"{note}\n" for note in notes] + [
             "| image | sky true (MJy/sr) | sky measured | ratio | stars | median flux ratio "
             "| median WCS offset (pix) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['sky_true']:.4f} | {r['sky_measured']:.4f} | "
                     f"{r['sky_ratio']:.4f} | {r['nstars']} | {r['flux_ratio']:.4f} | "
                     f"{r['wcs_offset_pix']:.3f} |")
    return "\n".join(lines) + "\n"
