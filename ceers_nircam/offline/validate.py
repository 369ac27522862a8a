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
from . import psf, scene

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


def true_sky(truth):
    """The injected sky (MJy/sr) on the pixels of the image as written."""
    h = truth["header"]
    coeffs = [h.get(k, 0.0) for k in ("SKYC_X", "SKYC_Y", "SKYC_XX", "SKYC_YY", "SKYC_XY")]
    return scene.sky_surface(h["SKYMJYSR"], coeffs, inst.NPIX, inst.subarray_region(h["SUBARRAY"]))


def measure_sky(image, dq, sources, exclude=None, model=None):
    """Mean sky of an image from its good pixels outside every source: the
    sigma-clipped median of ``image - model`` plus the mean of ``model`` (the
    sky's known shape, if given) over the image."""
    good = (dq & DO_NOT_USE) == 0
    good &= ~source_footprint(image.shape, sources)
    good &= np.isfinite(image)
    if exclude is not None:
        good &= ~exclude
    model = np.zeros(image.shape) if model is None else model
    _, median, _ = sigma_clipped_stats((image - model)[good], sigma=3.0, maxiters=10)
    return float(median + np.mean(model))


def isolated_sources(sources, shape, radius, kinds=("star", "galaxy"), mag_range=(19.5, 24.0),
                     contrast=5.0):
    """Indices of sources of the given kinds with no source less than ``contrast``
    magnitudes fainter reaching within ``radius`` pixels, and fully measurable
    inside the image."""
    chosen = np.flatnonzero(np.isin(np.asarray(sources["kind"]), kinds)
                            & (sources["mag"] >= mag_range[0]) & (sources["mag"] <= mag_range[1]))
    x, y = np.asarray(sources["x"]), np.asarray(sources["y"])
    reach = np.asarray(sources["halfsize"]) + radius
    mag = np.asarray(sources["mag"])
    keep = []
    for i in chosen:
        edge = radius + 10  # room for the sky annulus
        if not (edge <= x[i] <= shape[1] - 1 - edge and edge <= y[i] <= shape[0] - 1 - edge):
            continue
        near = (np.hypot(x - x[i], y - y[i]) <= reach) & (mag < mag[i] + contrast)
        near[i] = False
        if not near.any():
            keep.append(i)
    return np.array(keep, dtype=int)


def aperture_flux(image, x, y, r_ap, annulus):
    """Flux in a circular aperture minus the sigma-clipped mean of an annulus.

    ``image`` may hold NaN for unusable pixels (left out of the annulus; in
    the aperture they make the result NaN).
    """
    r_out = int(np.ceil(annulus[1])) + 1
    xi, yi = int(round(x)), int(round(y))
    cut = (slice(yi - r_out, yi + r_out + 1), slice(xi - r_out, xi + r_out + 1))
    stamp = image[cut].astype(np.float64)
    yy, xx = np.mgrid[cut[0], cut[1]]
    r = np.hypot(xx - x, yy - y)
    ring = (r >= annulus[0]) & (r < annulus[1]) & np.isfinite(stamp)
    sky = sigma_clipped_stats(stamp[ring], sigma=3.0)[0]
    inner = r < r_ap
    return float((stamp[inner] - sky).sum())


def aperture_radii(epsf):
    """Aperture radius and sky annulus (pixels) for a PSF: four FWHM, at least 5 pixels."""
    r_ap = max(5.0, 4.0 * epsf.fwhm() / epsf.pixel_scale)
    return r_ap, (r_ap + 6.0, r_ap + 14.0)


def expected_aperture_flux(source, epsf, pixel_area_sr):
    """What :func:`aperture_flux` gives (MJy) on a source drawn alone, noiseless, as the
    simulator drew it: same PSF, same profile, same sub-pixel position."""
    r_ap, annulus = aperture_radii(epsf)
    half = int(np.ceil(annulus[1])) + 2
    dx, dy = source["x"] - round(source["x"]), source["y"] - round(source["y"])
    image, _ = scene.render_scene(
        (2 * half + 1, 2 * half + 1), [half + dx], [half + dy], [source["flux_mjy"]],
        [source["r_eff"] / epsf.pixel_scale], [source["sersic_n"]], [source["axis_ratio"]],
        [source["theta"]], epsf, pixel_area_sr)
    return aperture_flux(image, half + dx, half + dy, r_ap, annulus) * pixel_area_sr


def source_photometry(image, dq, sources, pixar_sr, indices, epsf):
    """Aperture photometry of sources (MJy), against what the same aperture gives on
    their noiseless truth.

    The expected value applies the same aperture and local-sky annulus to the
    source drawn alone at its true position (:func:`expected_aperture_flux`),
    so the comparison is exact whatever share of the flux the aperture holds.
    A source with an unusable pixel in its aperture is left out. Returns a
    Table of id, kind, mag, true flux, expected and measured aperture flux,
    and their ratio.
    """
    r_ap, annulus = aperture_radii(epsf)
    data = np.where((dq & DO_NOT_USE) == 0, image, np.nan)
    rows = []
    for i in indices:
        s = sources[i]
        measured = aperture_flux(data, s["x"], s["y"], r_ap, annulus) * pixar_sr
        if not np.isfinite(measured):
            continue
        expected = expected_aperture_flux(s, epsf, pixar_sr)
        rows.append((s["id"], s["kind"], s["mag"], s["flux_mjy"], expected, measured,
                     measured / expected))
    return Table(rows=rows, names=("id", "kind", "mag", "flux_true", "flux_expected",
                                   "flux_measured", "ratio"),
                 dtype=(int, "U6", float, float, float, float, float))


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
    Returns a dict of the measured quantities. The WCS offset is measured
    after removing the pointing error the simulator wrote into the header
    (``wcs_offset_pix``) and as it stands (``wcs_error_arcsec``).
    """
    from stdatamodels.jwst import datamodels

    h = truth["header"]
    src = truth["sources"]
    with datamodels.ImageModel(cal_path) as cal:
        # The wisp is sky-like light the stage-1 wisp step removes; keep it out here.
        exclude = (wisp_region_mask(h["DETECTOR"], inst.subarray_region(h["SUBARRAY"]))
                   if h["WISPSCL"] else None)
        model = true_sky(truth)
        sky = measure_sky(cal.data, cal.dq, src, exclude, model=model)
        epsf = psf.effective_psf(h["FILTER"])
        isolated = isolated_sources(src, cal.data.shape, aperture_radii(epsf)[1][0])
        phot = source_photometry(cal.data, cal.dq, src, cal.meta.photometry.pixelarea_steradians,
                                 isolated, epsf)
        onchip = on_detector(src, cal.data.shape)
        dra, ddec = wcs_offsets(cal.meta.wcs, onchip)
        dx, dy = pixel_offsets(cal.meta.wcs, shift_sky(onchip, h["PTGERRA"], h["PTGERRD"]))
    return {
        "image": h["ROOTNAME"],
        "sky_true": float(np.mean(model)),
        "sky_measured": sky,
        "sky_ratio": sky / float(np.mean(model)) if h["SKYMJYSR"] else np.nan,
        "nsources": len(phot),
        "flux_ratio": float(np.median(phot["ratio"])) if len(phot) else np.nan,
        "wcs_error_arcsec": float(np.hypot(np.median(dra), np.median(ddec))) if len(onchip) else np.nan,
        "wcs_offset_pix": float(np.median(np.hypot(dx, dy))) if len(onchip) else np.nan,
    }


def shift_sky(sources, dra, ddec):
    """A copy of a truth table with RA/Dec moved by (dra cos Dec, ddec) arcsec."""
    out = sources.copy()
    out["dec"] = np.asarray(sources["dec"]) + ddec / 3600.0
    out["ra"] = np.asarray(sources["ra"]) + dra / 3600.0 / np.cos(np.deg2rad(np.asarray(out["dec"])))
    return out


def format_report(rows, title, notes=()):
    """A Markdown table of :func:`check_cal` results, after any explanatory notes."""
    lines = [f"# {title}", ""] + [f"{note}\n" for note in notes] + [
             "| image | sky true (MJy/sr) | sky measured | ratio | sources | median flux ratio "
             "| header WCS error (arcsec) | offset beyond the injected error (pix) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['sky_true']:.4f} | {r['sky_measured']:.4f} | "
                     f"{r['sky_ratio']:.4f} | {r['nsources']} | {r['flux_ratio']:.4f} | "
                     f"{r['wcs_error_arcsec']:.3f} | {r['wcs_offset_pix']:.3f} |")
    return "\n".join(lines) + "\n"
