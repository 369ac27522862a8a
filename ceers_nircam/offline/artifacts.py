"""Detector artifacts the CEERS reduction removes, generated with known truth.

Each function returns plain arrays or tables so the simulator can both inject
them and record them exactly as they appear in the rate image.
"""

import os

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..fitsio import write_hdulist
from ..nircam import WISP_DETECTORS, WISP_FILTERS, WISP_REGIONS
from . import instrument as inst



def _one_over_f(rng, n, rms, nseries=1):
    """Series with a 1/f power spectrum, zero mean, given rms."""
    freq = np.fft.rfftfreq(n)
    amp = np.zeros_like(freq)
    amp[1:] = 1.0 / np.sqrt(freq[1:])
    spec = amp * (rng.normal(size=(nseries, freq.size)) + 1j * rng.normal(size=(nseries, freq.size)))
    series = np.fft.irfft(spec, n=n, axis=-1)
    series -= series.mean(axis=-1, keepdims=True)
    series *= rms / series.std(axis=-1, keepdims=True)
    return series


def striping_patterns(rng, row_rms=0.006, col_rms=0.002):
    """1/f striping in a rate image (DN/s).

    Returns
    -------
    rows : ndarray (NAMPS, NPIX)
        Row pattern of each amplifier: a part common to all amplifiers plus an
        independent part per amplifier, as the readout electronics produce.
    cols : ndarray (NPIX,)
        Column pattern.
    """
    common = _one_over_f(rng, inst.NPIX, row_rms * 0.7)
    own = _one_over_f(rng, inst.NPIX, row_rms * 0.7, nseries=inst.NAMPS)
    rows = common + own
    cols = _one_over_f(rng, inst.NPIX, col_rms)[0]
    return rows.astype(np.float32), cols.astype(np.float32)


def striping_image(rows, cols, border=None):
    """The 2D image of row and column patterns on the light-sensitive pixels.

    ``rows`` is (noutputs, ny), one row pattern per readout amplifier, and
    ``cols`` (nx,); ``border`` marks reference pixels (the full-frame border
    by default).
    """
    rows = np.atleast_2d(rows)
    image = np.zeros((rows.shape[1], cols.size), dtype=np.float32)
    for amp, cs in enumerate(inst.amp_slices(cols.size, rows.shape[0])):
        image[:, cs] = rows[amp][:, None]
    image += cols[None, :]
    image[inst.reference_pixel_mask() if border is None else border] = 0.0
    return image


def wisp_template(detector, filt):
    """A synthetic wisp template (DN/s at scale 1) for a wisp-affected detector.

    A faint arc of scattered light inside the detector's wisp region; NaN on
    the reference-pixel border, as in the NIRCam team's templates.
    """
    x0, x1, y0, y1 = WISP_REGIONS[detector]
    y, x = np.mgrid[0:inst.NPIX, 0:inst.NPIX].astype(np.float32)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    rx, ry = (x1 - x0) / 2.0, (y1 - y0) / 2.0
    # An elliptical ring segment with a soft edge, brighter toward one end.
    rr = np.hypot((x - cx) / rx, (y - cy) / ry)
    ring = np.exp(-0.5 * ((rr - 0.6) / 0.18) ** 2) * (rr < 1.1)
    slope = 0.6 + 0.4 * (x - x0) / (x1 - x0)
    peak = 0.04 if filt == "F150W" else 0.05
    template = (peak * ring * np.clip(slope, 0.2, 1.0)).astype(np.float32)
    template[template < 1e-4 * peak] = 0.0
    template[inst.reference_pixel_mask()] = np.nan
    return template


def wisp_template_name(detector, filt):
    """File name of a wisp template, as in the NIRCam team's release."""
    return f"wisps_{detector.lower()}_{filt.upper()}.fits"


def write_wisp_templates(directory, detectors=WISP_DETECTORS, filters=WISP_FILTERS):
    """Write the synthetic templates for the given wisp detectors and filters."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for det in detectors:
        if det not in WISP_DETECTORS:
            continue
        for filt in filters:
            if filt not in WISP_FILTERS:
                continue
            path = os.path.join(directory, wisp_template_name(det, filt))
            if not os.path.exists(path):
                hdu = fits.PrimaryHDU(wisp_template(det, filt))
                hdu.header["DETECTOR"] = det
                hdu.header["FILTER"] = filt
                hdu.header["BUNIT"] = "DN/s"
                write_hdulist(fits.HDUList([hdu]), path)
            paths.append(path)
    return paths


# Charge (DN) at the edge of a snowball's detectable halo, a little above the
# pipeline's 4-sigma jump threshold, and where its faint wing ends.
HALO_EDGE_DN = 20.0
WING_END_DN = 1.0


def snowball_events(rng, n, ngroups, shape=(inst.NPIX, inst.NPIX)):
    """Random snowballs: large jump events with saturated cores.

    Returns a Table with x, y (pixel centre), the core radius (saturated),
    the halo radius (where the deposited charge falls to HALO_EDGE_DN, about
    what jump detection can see), the outer radius (where the faint wing the
    jump step misses falls to WING_END_DN), all in pixels; the charge just
    outside the core (DN); and the group in which each one lands (never the
    first, so the jump is seen).
    """
    margin = min(80, min(shape) // 4)
    t = Table()
    t["x"] = rng.uniform(margin, shape[1] - margin, n)
    t["y"] = rng.uniform(margin, shape[0] - margin, n)
    t["core_radius"] = rng.uniform(3.0, 7.0, n)
    t["halo_radius"] = t["core_radius"] * rng.uniform(2.5, 4.0, n)
    t["core_edge_dn"] = rng.uniform(1500.0, 7500.0, n)
    # The halo falls exponentially from the core edge through HALO_EDGE_DN at
    # the halo radius and on to WING_END_DN.
    scale = (t["halo_radius"] - t["core_radius"]) / np.log(t["core_edge_dn"] / HALO_EDGE_DN)
    t["outer_radius"] = t["core_radius"] + scale * np.log(t["core_edge_dn"] / WING_END_DN)
    t["group"] = rng.integers(1, max(2, ngroups - 1), n)
    return t


def snowball_radius(event, yy, xx):
    """Elliptical distance (pixels along the major axis) of pixels from a snowball's centre."""
    q = float(event["axis_ratio"]) if "axis_ratio" in event.colnames else 1.0
    angle = np.deg2rad(float(event["angle"])) if "angle" in event.colnames else 0.0
    dx, dy = xx - event["x"], yy - event["y"]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return np.hypot(u, v / q)


def snowball_footprint(events, shape, part="halo"):
    """True where any snowball reaches: ``part`` is "core", "halo" (core included) or "outer"
    (the faint wing included)."""
    key = {"core": "core_radius", "halo": "halo_radius", "outer": "outer_radius"}[part]
    mask = np.zeros(shape, dtype=bool)
    for ev in events:
        r_max = int(np.ceil(ev[key])) + 1
        y0, x0 = max(0, int(ev["y"]) - r_max), max(0, int(ev["x"]) - r_max)
        y1, x1 = min(shape[0], int(ev["y"]) + r_max + 2), min(shape[1], int(ev["x"]) + r_max + 2)
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] |= snowball_radius(ev, yy, xx) <= ev[key]
    return mask


def snowball_charge(events, shape=(inst.NPIX, inst.NPIX)):
    """Deposited charge (DN) of each snowball: (index arrays, DN values, group) per event."""
    out = []
    full_well_dn = 2.0 * inst.SATURATION_LEVEL
    for ev in events:
        r_out = int(np.ceil(ev["outer_radius"]))
        xc, yc = int(round(ev["x"])), int(round(ev["y"]))
        yy, xx = np.mgrid[yc - r_out:yc + r_out + 1, xc - r_out:xc + r_out + 1]
        r = snowball_radius(ev, yy, xx)
        inside = (r <= ev["outer_radius"]) & (xx >= 0) & (yy >= 0) & (xx < shape[1]) & (yy < shape[0])
        scale = (ev["halo_radius"] - ev["core_radius"]) / np.log(ev["core_edge_dn"] / HALO_EDGE_DN)
        dn = np.where(r <= ev["core_radius"], full_well_dn,
                      ev["core_edge_dn"] * np.exp(-(r - ev["core_radius"]) / scale))
        out.append(((yy[inside], xx[inside]), dn[inside], int(ev["group"])))
    return out


def cosmic_ray_count(rng, rate, duration, npix=inst.NPIX * inst.NPIX):
    """Number of cosmic-ray events on a detector in ``duration`` seconds.

    ``rate`` is in events per cm^2 per second (about 5 at L2); NIRCam pixels
    are 18 micron, so a full detector (``npix`` pixels) is 13.6 cm^2.
    """
    area_cm2 = npix * inst.PIXEL_PITCH_CM**2
    return int(rng.poisson(rate * area_cm2 * duration))


def cosmic_rays(rng, n, ngroups, gain, shape=(inst.NPIX, inst.NPIX)):
    """Ordinary cosmic-ray hits: one to three pixels each, landing in a random group.

    Returns a Table with one row per hit pixel: event number, x, y, group (>= 1,
    so the jump is seen) and charge (DN).
    """
    x0 = rng.integers(inst.NREF, shape[1] - inst.NREF - 1, n)
    y0 = rng.integers(inst.NREF, shape[0] - inst.NREF - 1, n)
    group = rng.integers(1, max(2, ngroups), n)
    charge = rng.uniform(300.0, 5000.0, n) / gain
    npix = rng.integers(1, 4, n)
    event = np.repeat(np.arange(n), npix)
    k = np.arange(event.size) - np.repeat(np.cumsum(npix) - npix, npix)  # pixel within event
    t = Table()
    t["event"] = event
    t["x"] = x0[event] + (k == 1)
    t["y"] = y0[event] + (k == 2)
    t["group"] = group[event]
    t["charge"] = charge[event] / (1 + k)
    return t


def add_cosmic_rays(groups, hits):
    """Add hits to group values (ngroups, ny, nx): charge stays from its group on."""
    y, x, g, q = (np.asarray(hits[c]) for c in ("y", "x", "group", "charge"))
    for k in range(groups.shape[0]):
        now = g <= k
        np.add.at(groups[k], (y[now], x[now]), q[now].astype(groups.dtype))
