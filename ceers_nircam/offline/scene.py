"""Truth source catalogs and their rendering onto a detector.

A catalog is an astropy Table with at least ``ra``, ``dec`` (deg) and ``mag``
(AB); :func:`generate_catalog` adds shape columns for a CEERS-like mix of
stars and galaxies. :func:`render_sources` draws a catalog into a surface
brightness image (MJy/sr) given pixel positions.
"""

import numpy as np
from astropy.table import Table
from scipy.signal import fftconvolve
from scipy.special import gammaincinv

from ..cli import CeersError

AB_ZEROPOINT_JY = 3631.0
MOFFAT_BETA = 2.5
OVERSAMPLE = 3
MAX_HALF = 48


def mag_to_mjy(mag):
    """AB magnitude -> flux density in MJy."""
    return AB_ZEROPOINT_JY * 1e-6 * 10.0 ** (-0.4 * np.asarray(mag, dtype=float))


def generate_catalog(ra, dec, radius_arcmin=3.0, density=250.0, mag_range=(18.0, 28.5),
                     star_fraction=0.05, seed=0):
    """A random CEERS-like scene of stars and galaxies around (ra, dec).

    Parameters
    ----------
    ra, dec : float
        Field centre in degrees.
    radius_arcmin : float
        Sources are spread uniformly over a circle of this radius.
    density : float
        Sources per square arcminute brighter than the faint limit.
    mag_range : (float, float)
        Bright and faint AB magnitude limits.
    star_fraction : float
        Fraction of point sources.
    seed : int
        Random seed.

    Returns
    -------
    `~astropy.table.Table`
        Columns id, ra, dec, mag, kind, r_eff (arcsec), sersic_n, axis_ratio, theta (deg).
    """
    rng = np.random.default_rng(seed)
    n = rng.poisson(density * np.pi * radius_arcmin**2)
    r = radius_arcmin / 60.0 * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    dec_s = dec + r * np.sin(phi)
    ra_s = ra + r * np.cos(phi) / np.cos(np.deg2rad(dec))
    # Galaxy counts rise as 10^(0.3 m) at faint NIR magnitudes: sample that law.
    bright, faint = mag_range
    slope = 0.3 * np.log(10)
    u = rng.uniform(0, 1, n)
    mag = np.log(np.exp(slope * bright) + u * (np.exp(slope * faint) - np.exp(slope * bright))) / slope
    star = rng.uniform(0, 1, n) < star_fraction
    mag[star] = rng.uniform(bright, min(faint, 25.0), star.sum())
    # Fainter galaxies are smaller; log-normal scatter about the median size.
    r_eff = 0.35 * 10 ** (-0.08 * (mag - 23.0)) * 10 ** rng.normal(0, 0.2, n)
    r_eff = np.clip(r_eff, 0.04, 1.5)
    r_eff[star] = 0.0
    table = Table()
    table["id"] = np.arange(1, n + 1)
    table["ra"] = ra_s
    table["dec"] = dec_s
    table["mag"] = mag
    table["kind"] = np.where(star, "star", "galaxy")
    table["r_eff"] = r_eff
    table["sersic_n"] = np.where(star, 0.0, rng.uniform(0.7, 4.0, n))
    table["axis_ratio"] = np.where(star, 1.0, rng.uniform(0.3, 1.0, n))
    table["theta"] = rng.uniform(0, 180, n)
    return table


HST_PIXEL = 0.06  # arcsec, pixel of the HST F160W mosaics the CEERS reference catalog comes from
HST_PSF_RH = 0.18  # arcsec, half-light radius of a point source in F160W


def reference_catalog(truth, mag_limit=26.0, scatter=0.01, seed=0):
    """An HST-like absolute astrometric reference catalog of a truth scene.

    Same columns as the CEERS HST F160W catalog of EGS: RA, DEC (deg), MAG and
    rh (half-light radius in 0.06 arcsec pixels). Sources brighter than
    ``mag_limit`` are kept and their positions scattered by ``scatter`` arcsec
    per coordinate, as a real catalog's measurement errors.
    """
    rng = np.random.default_rng(seed)
    keep = np.asarray(truth["mag"]) < mag_limit
    t = truth[keep]
    dec = np.asarray(t["dec"]) + rng.normal(0, scatter, len(t)) / 3600.0
    ra = np.asarray(t["ra"]) + rng.normal(0, scatter, len(t)) / 3600.0 / np.cos(np.deg2rad(dec))
    out = Table()
    out["RA"] = ra
    out["DEC"] = dec
    out["MAG"] = np.asarray(t["mag"])
    out["rh"] = np.hypot(np.asarray(t["r_eff"]), HST_PSF_RH) / HST_PIXEL
    out.meta["comments"] = [f"Simulated HST-like reference catalog: MAG < {mag_limit}, "
                            f"positional scatter {scatter} arcsec per coordinate"]
    return out


def read_catalog(path):
    """Read a user catalog (ECSV or any astropy-readable table) with RA, DEC, MAG.

    Column names are matched case-insensitively. Sources without shape columns
    are treated as point sources.
    """
    try:
        table = Table.read(path)
    except FileNotFoundError:
        raise CeersError(f"{path}: no such catalog file") from None
    except Exception as err:  # astropy raises many types for unreadable tables
        raise CeersError(f"{path}: cannot read catalog ({type(err).__name__}: {err})") from None
    lower = {name.lower(): name for name in table.colnames}
    missing = [c for c in ("ra", "dec", "mag") if c not in lower]
    if missing:
        raise CeersError(f"{path}: catalog lacks column(s) {', '.join(c.upper() for c in missing)}")
    out = Table()
    n = len(table)
    out["id"] = np.asarray(table[lower["id"]]) if "id" in lower else np.arange(1, n + 1)
    for col in ("ra", "dec", "mag"):
        out[col] = np.asarray(table[lower[col]], dtype=float)
    defaults = {"r_eff": 0.0, "sersic_n": 0.0, "axis_ratio": 1.0, "theta": 0.0}
    for col, value in defaults.items():
        out[col] = np.asarray(table[lower[col]], dtype=float) if col in lower else np.full(n, value)
    out["kind"] = np.where(out["r_eff"] > 0, "galaxy", "star")
    if not np.all(np.isfinite(out["ra"]) & np.isfinite(out["dec"])):
        raise CeersError(f"{path}: catalog has non-finite RA/DEC values")
    return out


def _moffat_alpha(fwhm_pix):
    return fwhm_pix / (2.0 * np.sqrt(2.0 ** (1.0 / MOFFAT_BETA) - 1.0))


def _moffat(x, y, fwhm_pix):
    alpha = _moffat_alpha(fwhm_pix)
    return (1.0 + (x**2 + y**2) / alpha**2) ** (-MOFFAT_BETA)


def _sersic(x, y, r_eff, n, q, theta_deg):
    b = gammaincinv(2.0 * n, 0.5)
    t = np.deg2rad(theta_deg)
    xr = x * np.cos(t) + y * np.sin(t)
    yr = -x * np.sin(t) + y * np.cos(t)
    r = np.sqrt(xr**2 + (yr / q) ** 2)
    return np.exp(-b * ((r / r_eff) ** (1.0 / n) - 1.0))


def stamp_halfsize(fwhm_pix, r_eff_pix):
    """Half-width (pixels) of the stamp that holds a source's light."""
    return int(min(MAX_HALF, np.ceil(8.0 * fwhm_pix + 4.0 * r_eff_pix) + 1))


def source_stamp(dx, dy, fwhm_pix, r_eff_pix=0.0, sersic_n=1.0, axis_ratio=1.0, theta=0.0):
    """Unit-sum image of one source, centred (dx, dy) pixels off the stamp centre.

    The profile (Moffat PSF, or a Sersic galaxy convolved with it) is
    integrated over pixels by oversampling, then normalised so the stamp
    holds exactly the source's flux.
    """
    half = stamp_halfsize(fwhm_pix, r_eff_pix)
    size = 2 * half + 1
    os_ = OVERSAMPLE
    sub = (np.arange(size * os_) + 0.5) / os_ - half - 0.5
    yy, xx = np.meshgrid(sub - dy, sub - dx, indexing="ij")
    if r_eff_pix > 0:
        gal = _sersic(xx, yy, r_eff_pix, sersic_n, axis_ratio, theta)
        k = np.arange(-4 * os_ * int(np.ceil(fwhm_pix)), 4 * os_ * int(np.ceil(fwhm_pix)) + 1) / os_
        ky, kx = np.meshgrid(k, k, indexing="ij")
        kernel = _moffat(kx, ky, fwhm_pix)
        img = fftconvolve(gal, kernel / kernel.sum(), mode="same")
    else:
        img = _moffat(xx, yy, fwhm_pix)
    img = img.reshape(size, os_, size, os_).sum(axis=(1, 3))
    img = np.clip(img, 0, None)
    return img / img.sum(), half


def render_sources(shape, x, y, flux, fwhm_pix, r_eff_pix, sersic_n, axis_ratio, theta,
                   pixel_area_sr):
    """Add sources to an image of surface brightness (MJy/sr).

    Parameters
    ----------
    shape : tuple
        Image shape (ny, nx).
    x, y : array
        0-based pixel positions.
    flux : array
        Total flux densities (MJy).
    fwhm_pix : float
        PSF FWHM in pixels.
    r_eff_pix, sersic_n, axis_ratio, theta : array
        Galaxy shapes (r_eff 0 for point sources).
    pixel_area_sr : float
        Pixel solid angle, to turn flux into surface brightness.

    Returns
    -------
    image : ndarray
        Surface brightness (MJy/sr), float64.
    halfsizes : ndarray
        Stamp half-width used for each source (0 when not drawn).
    """
    ny, nx = shape
    image = np.zeros(shape, dtype=np.float64)
    halfsizes = np.zeros(len(x), dtype=int)
    for i in range(len(x)):
        xi, yi = int(np.round(x[i])), int(np.round(y[i]))
        stamp, half = source_stamp(x[i] - xi, y[i] - yi, fwhm_pix, r_eff_pix[i], sersic_n[i],
                                   axis_ratio[i], theta[i])
        y0, y1, x0, x1 = yi - half, yi + half + 1, xi - half, xi + half + 1
        if x1 <= 0 or y1 <= 0 or x0 >= nx or y0 >= ny:
            continue
        sy0, sx0 = max(0, -y0), max(0, -x0)
        sy1 = stamp.shape[0] - max(0, y1 - ny)
        sx1 = stamp.shape[1] - max(0, x1 - nx)
        image[max(0, y0):min(ny, y1), max(0, x0):min(nx, x1)] += (
            flux[i] / pixel_area_sr * stamp[sy0:sy1, sx0:sx1])
        halfsizes[i] = half
    return image, halfsizes
