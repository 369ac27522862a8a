"""Truth source catalogs and their rendering onto a detector.

A catalog is an astropy Table with at least ``ra``, ``dec`` (deg) and ``mag``
(AB, the F150W-like reference band); :func:`generate_catalog` adds shape
columns and a magnitude per CEERS filter (``mag_f115w`` ...) for a
CEERS-deep mix of galaxies and a few stars. :func:`render_scene` draws a
catalog into a surface-brightness image (MJy/sr) through a filter's
effective PSF (:mod:`.psf`).
"""

import numpy as np
from astropy.table import Table
from scipy.signal import fftconvolve
from scipy.special import gamma, gammaincinv

from ..cli import CeersError
from ..nircam import FILTERS

AB_ZEROPOINT_JY = 3631.0
# Pivot wavelengths (um) of the CEERS filters, for galaxy and star colours.
PIVOT_UM = {"F115W": 1.154, "F150W": 1.501, "F200W": 1.988, "F277W": 2.776,
            "F356W": 3.565, "F410M": 4.083, "F444W": 4.402}
REFERENCE_UM = 1.54  # the reference band ``mag`` (HST F160W-like)

# CEERS-deep galaxy counts: cumulative N(<m) per arcmin^2 rises as 10^(slope m),
# steeply at bright magnitudes and with the flatter observed faint-end slope
# beyond the break (deep NIR counts, e.g. Windhorst et al. 2011).
DENSITY = 800.0  # galaxies per arcmin^2 brighter than FAINT_MAG
FAINT_MAG = 29.5
BREAK_MAG = 24.0
SLOPES = (0.32, 0.20)  # bright and faint of the break
BRIGHT_MAG = 16.0
STAR_DENSITY = 0.8  # per arcmin^2: the high-latitude EGS field
CLUSTER_FRACTION = 0.35


def mag_to_mjy(mag):
    """AB magnitude -> flux density in MJy."""
    return AB_ZEROPOINT_JY * 1e-6 * 10.0 ** (-0.4 * np.asarray(mag, dtype=float))


def galaxy_magnitudes(rng, n, density=DENSITY, faint=FAINT_MAG):
    """Reference-band magnitudes drawn from the broken power-law counts."""
    bright_slope, faint_slope = SLOPES
    # Cumulative counts (relative to the faint limit) at the break and the bright end.
    at_break = 10 ** (faint_slope * (BREAK_MAG - faint)) if faint > BREAK_MAG else 1.0
    at_bright = at_break * 10 ** (bright_slope * (BRIGHT_MAG - min(BREAK_MAG, faint)))
    u = rng.uniform(at_bright, 1.0, n)
    faint_part = faint + np.log10(np.maximum(u, at_break)) / faint_slope
    bright_part = min(BREAK_MAG, faint) + np.log10(np.minimum(u, at_break) / at_break) / bright_slope
    return np.where(u >= at_break, faint_part, bright_part)


def _positions(rng, n, ra, dec, radius_arcmin, cluster_fraction):
    """Positions over a disc: a uniform part and a part in Gaussian clumps of a few arcsec."""
    def disc(m):
        r = radius_arcmin / 60.0 * np.sqrt(rng.uniform(0, 1, m))
        phi = rng.uniform(0, 2 * np.pi, m)
        return r * np.cos(phi), r * np.sin(phi)

    nclump_members = int(round(cluster_fraction * n))
    x, y = disc(n - nclump_members)
    nclumps = max(1, nclump_members // 8)
    cx, cy = disc(nclumps)
    host = rng.integers(0, nclumps, nclump_members)
    size = rng.uniform(1.0, 4.0, nclumps) / 3600.0
    x = np.concatenate([x, cx[host] + rng.normal(0, 1, nclump_members) * size[host]])
    y = np.concatenate([y, cy[host] + rng.normal(0, 1, nclump_members) * size[host]])
    order = rng.permutation(n)
    return ra + x[order] / np.cos(np.deg2rad(dec)), dec + y[order]


def generate_catalog(ra, dec, radius_arcmin=3.0, density=DENSITY, faint_mag=FAINT_MAG,
                     star_density=STAR_DENSITY, cluster_fraction=CLUSTER_FRACTION, seed=0):
    """A random CEERS-deep scene of galaxies and a few stars around (ra, dec).

    Parameters
    ----------
    ra, dec : float
        Field centre in degrees.
    radius_arcmin : float
        Sources are spread over a circle of this radius.
    density : float
        Galaxies per square arcminute brighter than ``faint_mag``.
    faint_mag : float
        Faint limit (AB) of the galaxies.
    star_density : float
        Stars per square arcminute (18 to 27 mag).
    cluster_fraction : float
        Share of galaxies in clumps of a few arcseconds.
    seed : int
        Random seed.

    Returns
    -------
    `~astropy.table.Table`
        Columns id, ra, dec, mag (reference band), mag_<filter> for each
        CEERS filter, kind, r_eff (arcsec), sersic_n, axis_ratio, theta (deg).
    """
    rng = np.random.default_rng(seed)
    area = np.pi * radius_arcmin**2
    ngal = rng.poisson(density * area)
    nstar = rng.poisson(star_density * area)
    n = ngal + nstar
    ra_s, dec_s = _positions(rng, n, ra, dec, radius_arcmin, cluster_fraction * ngal / max(n, 1))
    star = np.zeros(n, dtype=bool)
    star[ngal:] = True
    mag = np.concatenate([galaxy_magnitudes(rng, ngal, density, faint_mag),
                          rng.uniform(18.0, 27.0, nstar)])
    # Fainter galaxies are smaller; log-normal scatter about the median size.
    r_eff = 0.35 * 10 ** (-0.08 * (mag - 23.0)) * 10 ** rng.normal(0, 0.2, n)
    r_eff = np.where(star, 0.0, np.clip(r_eff, 0.03, 1.5))
    # Colours: a power law f_nu ~ lambda^beta per source (red galaxies, blue
    # Rayleigh-Jeans stars) plus a little scatter per filter.
    beta = np.where(star, rng.uniform(-2.0, -0.5, n), rng.normal(0.4, 0.6, n))
    table = Table()
    table["id"] = np.arange(1, n + 1)
    table["ra"] = ra_s
    table["dec"] = dec_s
    table["mag"] = mag
    for filt in FILTERS:
        colour = -2.5 * beta * np.log10(PIVOT_UM[filt] / REFERENCE_UM)
        table[f"mag_{filt.lower()}"] = mag + colour + rng.normal(0, 0.05, n) * ~star
    table["kind"] = np.where(star, "star", "galaxy")
    table["r_eff"] = r_eff
    table["sersic_n"] = np.where(star, 0.0, rng.uniform(0.7, 4.0, n))
    table["axis_ratio"] = np.where(star, 1.0, rng.uniform(0.3, 1.0, n))
    table["theta"] = rng.uniform(0, 180, n)
    return table


def source_mag(catalog, filt):
    """Magnitudes of a catalog in a filter: its ``mag_<filter>`` column, else ``mag``."""
    col = f"mag_{filt.lower()}"
    return np.asarray(catalog[col] if col in catalog.colnames else catalog["mag"], dtype=float)


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
    are treated as point sources; ``MAG_<FILTER>`` columns, where present,
    give magnitudes per filter (``MAG`` is used in the others).
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
    for filt in FILTERS:  # magnitudes per filter, where the catalog gives them
        if f"mag_{filt.lower()}" in lower:
            out[f"mag_{filt.lower()}"] = np.asarray(table[lower[f"mag_{filt.lower()}"]], dtype=float)
    out["kind"] = np.where(out["r_eff"] > 0, "galaxy", "star")
    if not np.all(np.isfinite(out["ra"]) & np.isfinite(out["dec"])):
        raise CeersError(f"{path}: catalog has non-finite RA/DEC values")
    return out


def _sersic(x, y, r_eff, n, q, theta_deg):
    """Sersic surface brightness (per unit area) normalised to unit total flux."""
    b = gammaincinv(2.0 * n, 0.5)
    t = np.deg2rad(theta_deg)
    xr = x * np.cos(t) + y * np.sin(t)
    yr = -x * np.sin(t) + y * np.cos(t)
    r2 = (xr**2 + (yr / q) ** 2) / r_eff**2
    total = 2 * np.pi * q * r_eff**2 * n * np.exp(b) * b ** (-2 * n) * gamma(2 * n)
    # (r / r_eff)^(1/n) through the squared radius: one power instead of a root and a power.
    return np.exp(b - b * r2 ** (0.5 / n)) / total


def galaxy_halfsize(r_eff_pix, sersic_n=4.0):
    """Half-width (pixels) of the stamp drawn for a galaxy's intrinsic profile:
    (4 + n) effective radii, which hold 96-99.7% of a Sersic profile's light."""
    return int(np.clip(np.ceil((4.0 + sersic_n) * r_eff_pix) + 2, 3, 150))


def _pixel_means(dx, dy, half, sub, r_eff_pix, sersic_n, axis_ratio, theta):
    """Mean of the profile over each pixel of a (2 half + 1)^2 box, on a sub x sub grid."""
    size = 2 * half + 1
    grid = ((np.arange(size * sub) + 0.5) / sub - half - 0.5).astype(np.float32)
    yy, xx = np.meshgrid(grid - np.float32(dy), grid - np.float32(dx), indexing="ij")
    img = _sersic(xx, yy, r_eff_pix, sersic_n, axis_ratio, theta)
    return img.reshape(size, sub, size, sub).mean(axis=(1, 3), dtype=np.float64)


def galaxy_stamp(dx, dy, r_eff_pix, sersic_n, axis_ratio, theta):
    """A galaxy's intrinsic profile integrated over pixels, centred (dx, dy) off the stamp centre.

    Unit total flux over the infinite plane, so the stamp sums to the share
    of the light it holds; never renormalised. A 3 x 3 grid per pixel
    integrates the wings; the central pixels, where the profile's cusp
    lies, get a 15 x 15 grid.
    """
    half = galaxy_halfsize(r_eff_pix, sersic_n)
    stamp = _pixel_means(dx, dy, half, 3, r_eff_pix, sersic_n, axis_ratio, theta)
    core = min(half, 3)
    inner = slice(half - core, half + core + 1)
    stamp[inner, inner] = _pixel_means(dx, dy, core, 15, r_eff_pix, sersic_n, axis_ratio, theta)
    return stamp, half


def render_scene(shape, x, y, flux, r_eff_pix, sersic_n, axis_ratio, theta, epsf, pixel_area_sr):
    """Draw sources into an image of surface brightness (MJy/sr) through a PSF.

    Galaxies are drawn as intrinsic profiles on a canvas larger than the image
    by the PSF's reach, which is then convolved with the PSF; point sources
    (``r_eff_pix`` 0) are drawn directly as sub-pixel-shifted PSF stamps.

    Parameters
    ----------
    shape : tuple
        Image shape (ny, nx).
    x, y : array
        0-based pixel positions.
    flux : array
        Total flux densities (MJy).
    r_eff_pix, sersic_n, axis_ratio, theta : array
        Galaxy shapes (r_eff 0 for point sources).
    epsf : `~ceers_nircam.offline.psf.EffectivePSF`
        The filter's effective PSF on this detector's pixels.
    pixel_area_sr : float
        Pixel solid angle, to turn flux into surface brightness.

    Returns
    -------
    image : ndarray
        Surface brightness (MJy/sr), float64.
    drawn : ndarray
        Share of each source's flux drawn (the PSF stamp and the galaxy stamp
        hold slightly less than all of it).
    """
    ny, nx = shape
    pad = epsf.halfsize
    canvas = np.zeros((ny + 2 * pad, nx + 2 * pad))
    image = np.zeros(shape)
    drawn = np.zeros(len(x))
    for i in range(len(x)):
        xi, yi = int(np.round(x[i])), int(np.round(y[i]))
        if r_eff_pix[i] > 0:
            stamp, half = galaxy_stamp(x[i] - xi, y[i] - yi, r_eff_pix[i], sersic_n[i],
                                       axis_ratio[i], theta[i])
            target, xi, yi = canvas, xi + pad, yi + pad
            drawn[i] = stamp.sum() * epsf.fraction
        else:
            stamp, half = epsf.stamp(x[i] - xi, y[i] - yi), epsf.halfsize
            target = image
            drawn[i] = stamp.sum()
        _add_stamp(target, stamp * flux[i] / pixel_area_sr, xi, yi, half)
    if canvas.any():
        image += fftconvolve(canvas, epsf.kernel(), mode="same")[pad:pad + ny, pad:pad + nx]
    return image, drawn


def _add_stamp(image, stamp, xi, yi, half):
    """Add a stamp centred on pixel (xi, yi), clipped at the image edges."""
    ny, nx = image.shape
    y0, y1, x0, x1 = yi - half, yi + half + 1, xi - half, xi + half + 1
    if x1 <= 0 or y1 <= 0 or x0 >= nx or y0 >= ny:
        return
    sy0, sx0 = max(0, -y0), max(0, -x0)
    sy1 = stamp.shape[0] - max(0, y1 - ny)
    sx1 = stamp.shape[1] - max(0, x1 - nx)
    image[max(0, y0):min(ny, y1), max(0, x0):min(nx, x1)] += stamp[sy0:sy1, sx0:sx1]


def source_extent(r_eff_pix, fwhm_pix):
    """Radius (pixels) holding nearly all of a source's light above the PSF wings,
    for masks and isolation tests."""
    return np.ceil(3.0 * np.asarray(r_eff_pix) + 3.0 * fwhm_pix + 2.0).astype(int)


def sky_coefficients(rng, level, amplitude):
    """A random low-order sky surface across a detector, as coefficients (MJy/sr).

    Terms x, y, x^2 - 1/3, y^2 - 1/3, xy in detector coordinates scaled to
    [-1, 1], each of zero mean over the detector (so ``level`` stays the
    mean sky); scaled so the largest departure from ``level`` is
    ``amplitude`` times ``level``.
    """
    coeffs = rng.normal(0.0, 1.0, 5) * np.array([1.0, 1.0, 0.4, 0.4, 0.4])
    grid = np.linspace(-1, 1, 65)
    peak = np.abs(_sky_terms(*np.meshgrid(grid, grid), coeffs, 1 / 3)).max()
    return coeffs * amplitude * level / peak if peak > 0 else coeffs * 0.0


def _sky_terms(gx, gy, coeffs, mean_square):
    cx, cy, cxx, cyy, cxy = coeffs
    return (cx * gx + cy * gy + cxx * (gx**2 - mean_square) + cyy * (gy**2 - mean_square)
            + cxy * gx * gy)


def sky_surface(level, coeffs, npix, region=None):
    """The sky (MJy/sr) on a full-frame detector of ``npix`` pixels, or on ``region`` of it."""
    g = np.arange(npix) / ((npix - 1) / 2.0) - 1.0
    mean_square = np.mean(g**2)  # of the pixel grid, so the surface's mean is exactly ``level``
    gy, gx = np.meshgrid(g, g, indexing="ij")
    if region is not None:
        gy, gx = gy[region], gx[region]
    return level + _sky_terms(gx, gy, coeffs, mean_square)

