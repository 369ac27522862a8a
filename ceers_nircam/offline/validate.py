"""Compare calibrated products with the simulator's truth.

Used by the tests and by the demo's validation report, so both judge the
reduction by the same measurements.
"""

import os

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


# --------------------------------------------------------------------------
# stage 3: alignment, sky, variance and mosaics


def detectable(truth, shape=(inst.NPIX, inst.NPIX), margin=10, mag_limit=27.0):
    """Truth sources of an exposure at least ``margin`` pixels inside the image and brighter
    than ``mag_limit``: the ones an alignment catalog can hold."""
    src = truth["sources"]
    x, y = np.asarray(src["x"]), np.asarray(src["y"])
    ny, nx = shape
    keep = (x > margin) & (x < nx - 1 - margin) & (y > margin) & (y < ny - 1 - margin)
    return src[keep & (np.asarray(src["mag"]) < mag_limit)]


def matched_sources(sources, catalog, radius=1.0):
    """Rows of ``sources`` with a ``catalog`` source (x, y columns) within ``radius`` pixels."""
    from scipy.spatial import cKDTree

    if len(catalog) == 0:
        return sources[:0]
    tree = cKDTree(np.column_stack([catalog["x"], catalog["y"]]))
    dist, _ = tree.query(np.column_stack([sources["x"], sources["y"]]), distance_upper_bound=radius)
    return sources[np.isfinite(dist)]


def pairwise_rms_mas(positions):
    """RMS (mas) of the sky-position differences of the same sources between dithers.

    ``positions`` maps a dither to {source id: (ra, dec)} in degrees.
    """
    keys = sorted(positions)
    diffs = []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            common = sorted(set(positions[a]) & set(positions[b]))
            if not common:
                continue
            pa = np.array([positions[a][k] for k in common])
            pb = np.array([positions[b][k] for k in common])
            cosd = np.cos(np.deg2rad(pa[:, 1]))
            diffs.append(np.column_stack([(pa[:, 0] - pb[:, 0]) * cosd, pa[:, 1] - pb[:, 1]]) * 3.6e6)
    d = np.concatenate(diffs)
    return float(np.sqrt(np.mean(np.sum(d**2, axis=1))))


def scene_rate(truth, ideal, flat):
    """The noiseless source light of an exposure as its rate file holds it (DN/s, the flat
    applied): the simulator's noiseless rate ``ideal`` with its striping patterns, wisp and
    sky taken out."""
    from . import artifacts

    h = truth["header"]
    ideal = np.asarray(ideal, dtype=np.float64)
    if "stripe_rows" in truth:
        ideal = ideal - artifacts.striping_image(truth["stripe_rows"], truth["stripe_cols"],
                                                 np.zeros(ideal.shape, bool))
    if "wisp" in truth:
        ideal = ideal - truth["wisp"]
    return ideal - true_sky(truth) / h["PHOTMJSR"] * flat


def scene_cal(truth, ideal, model):
    """The noiseless source light of an exposure in the units of its cal file (MJy/sr).

    :func:`scene_rate` through the flat and photom as Image2 does (``model``:
    any image of the exposure, for its flat).
    """
    from .. import reffiles

    flat, _ = reffiles.flat_field(model)
    return (scene_rate(truth, ideal, flat) / flat * truth["header"]["PHOTMJSR"]).astype(np.float32)


def write_scene_copy(image_path, truth, ideal, out_path):
    """A copy of a calibrated image (WCS, flags and variances kept) whose SCI is the
    noiseless scene (NaN where SCI is NaN): drizzled like the data, it is the truth of a
    mosaic."""
    from stdatamodels.jwst import datamodels

    from ..fitsio import save_model

    with datamodels.ImageModel(image_path) as model:
        model.data = np.where(np.isfinite(model.data), scene_cal(truth, ideal, model),
                              np.nan).astype(np.float32)
        model.meta.filename = os.path.basename(out_path)
        save_model(model, out_path)
    return out_path


def background_variance(data, dq, scene, sources, block=64):
    """True per-pixel variance of the background noise of a calibrated image: the
    5-sigma-clipped variance of ``data`` less its noiseless ``scene`` and less the sky
    (``block``-pixel medians), over unflagged pixels away from every source."""
    from ..masking import block_reduce, upsample

    resid = np.asarray(data, dtype=np.float64) - scene
    good = (dq == 0) & np.isfinite(resid) & ~source_footprint(resid.shape, sources)
    sky = upsample(block_reduce(np.where(good, resid, np.nan), block, np.nanmedian), block,
                   resid.shape)
    _, _, std = sigma_clipped_stats((resid - sky)[good], sigma=5.0, maxiters=10)
    return float(std) ** 2


def windowed_centroid(image, x, y, sigma, half=10, iterations=10):
    """Gaussian-windowed centroid (SExtractor's XWIN) of a background-subtracted image;
    NaN when the window leaves the image or holds a NaN."""
    xi, yi = int(round(x)), int(round(y))
    if xi - half < 0 or yi - half < 0:
        return np.nan, np.nan
    stamp = image[yi - half:yi + half + 1, xi - half:xi + half + 1]
    if stamp.shape != (2 * half + 1, 2 * half + 1) or not np.all(np.isfinite(stamp)):
        return np.nan, np.nan
    yy, xx = np.mgrid[yi - half:yi + half + 1, xi - half:xi + half + 1]
    cx, cy = x, y
    for _ in range(iterations):
        w = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)) * stamp
        cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
    return cx, cy


def isolated_in_mosaic(catalog, filt, wcs, shape, mag_max=25.0, radius=0.8, r_eff_max=0.3,
                       edge=20):
    """Truth-catalog sources brighter than ``mag_max`` in ``filt`` with no source within 3
    mag of them inside ``radius`` arcsec, compact (r_eff < ``r_eff_max`` arcsec) and at
    least ``edge`` pixels inside a mosaic. Returns (indices, x, y) with x, y the mosaic
    pixels of every catalog source."""
    mag = np.asarray(catalog[f"mag_{filt.lower()}"])
    ra, dec = np.asarray(catalog["ra"]), np.asarray(catalog["dec"])
    x, y = wcs.all_world2pix(ra, dec, 0)
    ny, nx = shape
    pick = np.flatnonzero((mag < mag_max) & (np.asarray(catalog["r_eff"]) < r_eff_max)
                          & (x > edge) & (x < nx - 1 - edge) & (y > edge) & (y < ny - 1 - edge))
    keep = []
    for i in pick:
        d = np.hypot((ra - ra[i]) * np.cos(np.deg2rad(dec[i])), dec - dec[i]) * 3600
        near = (d < radius) & (mag < mag[i] + 3)
        near[i] = False
        if not near.any():
            keep.append(i)
    return np.array(keep, dtype=int), x, y


def _sourceless(image, scene, covered, fraction=0.1):
    """Covered pixels where the noiseless scene is below ``fraction`` of the noise.

    The noise is first taken robustly over every covered pixel of image less
    scene (the scene's light is subtracted there; only its Poisson noise
    remains), so the cut works in any band, however many faint wings fill it.
    """
    noise = (image - scene)[covered][::5]
    first = 1.4826 * np.median(np.abs(noise - np.median(noise)))
    return covered & (scene < fraction * first)


def mosaic_sky_rms(image, scene):
    """Sky RMS of a mosaic: the clipped standard deviation of the mosaic less its noiseless
    scene where no source light falls."""
    empty = _sourceless(image, scene, np.isfinite(image))
    _, _, std = sigma_clipped_stats((image - scene)[empty][::3], sigma=5.0)
    return float(std)


def empty_aperture_noise(image, err, scene, radius):
    """:func:`ceers_nircam.apertures.aperture_noise` of a mosaic where no source light
    falls, by the truth.

    The sky is first removed with a 64-pixel Background2D masked by the scene;
    apertures touching light above 2% of the noise are left out.
    Returns an :class:`~ceers_nircam.apertures.ApertureNoise`.
    """
    from ..apertures import aperture_noise
    from ..background import background2d

    image = np.asarray(image, dtype=np.float32)
    empty = np.isfinite(image) & np.isfinite(err)
    rms = np.nanstd((image - scene)[_sourceless(image, scene, empty)][::7])
    excluded = ~empty | (scene > 0.02 * rms)
    bkg, _ = background2d(image, excluded, box=64, filter_size=3)
    return aperture_noise(image - bkg, err, excluded, radius)


def err_at_pixels(err, x, y):
    """ERR at mosaic pixels over the median of their neighbours 3-4 pixels out (a hole
    in the error map gives a ratio near 0)."""
    ratios = []
    for xi, yi in zip(np.round(x).astype(int), np.round(y).astype(int)):
        if not (5 <= xi < err.shape[1] - 5 and 5 <= yi < err.shape[0] - 5):
            continue
        box = err[yi - 4:yi + 5, xi - 4:xi + 5].copy()
        box[2:7, 2:7] = np.nan
        level = np.nanmedian(box)
        if np.isfinite(level):
            ratios.append(err[yi, xi] / level)
    return np.array(ratios)


def err_at_bad_pixels(err, sci, wcs, exposures):
    """:func:`err_at_pixels` at the injected bad pixels of each exposure of a mosaic.

    ``exposures`` yields (calibrated image path, truth bad-pixel table).
    Mosaic pixels without data (SCI NaN: only the bad pixel's exposure
    covered them) are counted apart. Returns (finite ratios, count without data).
    """
    from stdatamodels.jwst import datamodels

    err = np.where(np.isfinite(sci), err, np.nan)
    ratios = []
    for path, bad in exposures:
        with datamodels.open(path) as model:
            ra, dec = model.meta.wcs(np.asarray(bad["x"], float), np.asarray(bad["y"], float))
        x, y = wcs.all_world2pix(ra, dec, 0)
        ratios.append(err_at_pixels(err, x, y))
    ratios = np.concatenate(ratios) if ratios else np.array([])
    finite = ratios[np.isfinite(ratios)]
    return finite, int(ratios.size - finite.size)
