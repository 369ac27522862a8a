"""Detector artifacts the CEERS reduction removes, generated with known truth.

Each function returns plain arrays or tables so the simulator can both inject
them and record them exactly as they appear in the rate image.
"""

import os

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy.special import ndtr

from ..fitsio import write_hdulist
from ..nircam import WISP_DETECTORS, WISP_FILTERS, WISP_REGIONS
from . import instrument as inst


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


# Relative brightness of the wisp on each detector: NRCB4's is the strongest.
WISP_STRENGTH = {"NRCA3": 0.6, "NRCA4": 0.35, "NRCB3": 0.45, "NRCB4": 1.0}


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
    peak = (0.04 if filt == "F150W" else 0.05) * WISP_STRENGTH[detector]
    template = (peak * ring * np.clip(slope, 0.2, 1.0)).astype(np.float32)
    template[template < 1e-4 * peak] = 0.0
    template[inst.reference_pixel_mask()] = np.nan
    return template


def wisp_distortion(rng, template, rms, cells=12):
    """A smooth multiplicative distortion 1 + d of a wisp template, different each exposure.

    ``d`` varies over a few hundred pixels, has the given ``rms`` weighted by
    the template's light, and is made orthogonal to the template, so that a
    least-squares fit of the distorted wisp by the template gives back its
    scale exactly: the truth's scale is that of the template component.
    """
    from scipy.ndimage import zoom

    coarse = rng.normal(0.0, 1.0, (cells, cells))
    d = zoom(coarse, inst.NPIX / cells, order=3, mode="nearest")[:inst.NPIX, :inst.NPIX]
    t2 = np.nan_to_num(template.astype(np.float64)) ** 2
    d -= (t2 * d).sum() / t2.sum()
    d *= rms / np.sqrt((t2 * d**2).sum() / t2.sum())
    return (1.0 + d).astype(np.float32)


def wisp_template_name(detector, filt):
    """File name of a wisp template, as in the NIRCam team's release."""
    return f"wisps_{detector.lower()}_{filt.upper()}.fits"


def _holds(path, image):
    """True when the FITS file ``path`` exists and its primary data equal ``image``."""
    if not os.path.exists(path):
        return False
    try:
        return np.array_equal(fits.getdata(path), image, equal_nan=True)
    except (OSError, ValueError, TypeError):
        return False


def write_wisp_templates(directory, detectors=WISP_DETECTORS, filters=WISP_FILTERS):
    """Write the synthetic templates for the given wisp detectors and filters.

    A template already there is kept only if it is the one this version
    makes, so that a directory left by an older version is brought up to
    date rather than trusted.
    """
    os.makedirs(directory, exist_ok=True)
    paths = []
    for det in detectors:
        if det not in WISP_DETECTORS:
            continue
        for filt in filters:
            if filt not in WISP_FILTERS:
                continue
            path = os.path.join(directory, wisp_template_name(det, filt))
            template = wisp_template(det, filt)
            if not _holds(path, template):
                hdu = fits.PrimaryHDU(template)
                hdu.header["DETECTOR"] = det
                hdu.header["FILTER"] = filt
                hdu.header["BUNIT"] = "DN/s"
                write_hdulist(fits.HDUList([hdu]), path)
            paths.append(path)
    return paths


# --------------------------------------------------------------------------
# charge that arrives during the integration


def group_response(arrival, frame_times, tau=None):
    """Share of a deposit each group holds, for deposits arriving at ``arrival`` (s).

    A group averages its frames; a frame read after the arrival holds the
    charge. With ``tau`` (s) the charge comes in as 1 - exp(-dt / tau)
    after the arrival instead of at once (a slow release). Returns an array
    (n, ngroups).
    """
    dt = frame_times[None, :, :] - np.asarray(arrival, dtype=float)[:, None, None]
    if tau is None:
        seen = (dt > 0).astype(float)
    else:
        seen = np.where(dt > 0, -np.expm1(-np.maximum(dt, 0.0) / tau), 0.0)
    return seen.mean(axis=2)


def arrivals(rng, n, frame_times, detectable=False):
    """Random arrival times over an integration; the group that first holds each
    deposit; and the share of the deposit in that group.

    With ``detectable`` the arrivals come after the first group's reads, so
    that a jump can be seen (any later group, the last included).
    """
    start = frame_times[0, -1] if detectable else 0.0
    t = rng.uniform(start, frame_times[-1, -1], n)
    share = group_response(t, frame_times)
    first = np.argmax(share > 0, axis=1)
    return t, first, share[np.arange(n), first]


def _deposit(groups, flat_index, charge, share):
    """Add ``charge`` (per pixel) times each group's ``share`` (per pixel) to the group values."""
    npix = groups.shape[1] * groups.shape[2]
    for g in range(groups.shape[0]):
        add = np.bincount(flat_index, weights=charge * share[:, g], minlength=npix)
        groups[g] += add.reshape(groups.shape[1:]).astype(groups.dtype)


# --------------------------------------------------------------------------
# snowballs

# Charge (DN) at the edge of a snowball's detectable halo, a little above the
# pipeline's 4-sigma jump threshold, and where its faint wing ends.
HALO_EDGE_DN = 20.0
WING_END_DN = 1.0
SNOWBALL_RATE = 1.0 / 20.0  # per second on a full-frame detector (JDox)
SNOWBALL_SPREAD = 0.3  # exposure-to-exposure spread of the rate (fractional rms)
ELONGATED_FRACTION = 0.2
RELEASE_TIME = 100.0  # s, e-folding time of the halo charge released after the event


def snowball_count(rng, duration, rate=SNOWBALL_RATE, spread=SNOWBALL_SPREAD, area=1.0):
    """Number of snowballs in ``duration`` s on ``area`` (fraction of a full frame).

    The rate itself varies between exposures (a gamma deviate of mean 1 and
    rms ``spread``), as flight data show.
    """
    factor = rng.gamma(1.0 / spread**2, spread**2) if spread > 0 else 1.0
    return int(rng.poisson(rate * factor * duration * area))


def halo_scale(core_radius, halo_radius, core_edge_dn):
    """e-folding length (pixels) of a snowball halo falling from ``core_edge_dn`` at the core
    edge to HALO_EDGE_DN at the halo radius."""
    return (np.asarray(halo_radius, float) - np.asarray(core_radius, float)) / np.log(
        np.asarray(core_edge_dn, float) / HALO_EDGE_DN)


def snowball_events(rng, n, frame_times, shape=(inst.NPIX, inst.NPIX)):
    """Random snowballs: large jump events with saturated cores.

    Returns a Table with x, y (pixel centre), the core radius (saturated),
    the halo radius (where the deposited charge falls to HALO_EDGE_DN, about
    what jump detection can see), the outer radius (where the faint wing the
    jump step misses falls to WING_END_DN), all along the major axis in
    pixels; axis ratio and angle (deg) of the elongated ones (most are
    round); the charge just outside the core (DN); the arrival time (s); the
    first group holding the charge and its share in that group (the rest
    lands in the next); and the share of the halo charge released slowly
    afterwards (e-folding RELEASE_TIME).
    """
    t = Table()
    t["x"] = rng.uniform(inst.NREF, shape[1] - inst.NREF, n)
    t["y"] = rng.uniform(inst.NREF, shape[0] - inst.NREF, n)
    t["core_radius"] = rng.uniform(3.0, 7.0, n)
    t["halo_radius"] = t["core_radius"] * rng.uniform(2.5, 4.0, n)
    t["core_edge_dn"] = rng.uniform(1500.0, 7500.0, n)
    # The halo falls exponentially from the core edge through HALO_EDGE_DN at
    # the halo radius and on to WING_END_DN.
    scale = halo_scale(t["core_radius"], t["halo_radius"], t["core_edge_dn"])
    t["outer_radius"] = t["core_radius"] + scale * np.log(t["core_edge_dn"] / WING_END_DN)
    elongated = rng.uniform(0, 1, n) < ELONGATED_FRACTION
    t["axis_ratio"] = np.where(elongated, rng.uniform(0.4, 0.8, n), 1.0)
    t["angle"] = np.where(elongated, rng.uniform(0.0, 180.0, n), 0.0)
    t["time"], t["group"], t["fraction"] = arrivals(rng, n, frame_times, detectable=True)
    t["release"] = rng.uniform(0.01, 0.05, n)
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


def recorded_halos(events, ngroups):
    """The snowballs with the halo their ramp records: a snowball arriving in the
    last group leaves there only its ``fraction`` of the charge, and no later
    group holds the rest, so its detectable halo ends where that share of the
    deposit falls to HALO_EDGE_DN (the core at least)."""
    out = events.copy()
    last = np.asarray(out["group"]) >= ngroups - 1
    if last.any():
        core, halo = np.asarray(out["core_radius"], float), np.asarray(out["halo_radius"], float)
        edge = np.asarray(out["core_edge_dn"], float)
        scale = halo_scale(core, halo, edge)
        seen = np.log(np.maximum(np.asarray(out["fraction"], float) * edge / HALO_EDGE_DN, 1.0))
        out["halo_radius"] = np.where(last, core + scale * seen, halo)
    return out


def halo_edge_dn(rate, header):
    """Deposit (DN) at the edge of the halo a ramp can record, per pixel.

    HALO_EDGE_DN sits a little above the jump step's threshold on the sky.
    Where a source is bright, its photon noise in a group difference hides
    a deposit that faint, so the edge rises with that noise. ``rate`` is the
    noiseless rate (DN/s); ``header`` the truth header (GAIN, RNGROUP,
    SKYRATE, SUBARRAY).
    """
    tgroup = inst.group_time(inst.subarray_frame_time(header.get("SUBARRAY", "FULL")))
    gain, read_noise = float(header["GAIN"]), float(header["RNGROUP"])

    def sigma(r):
        return np.sqrt(np.maximum(r, 0.0) * tgroup / gain + 2.0 * read_noise**2)

    return (HALO_EDGE_DN * np.maximum(sigma(np.asarray(rate, np.float64))
                                      / sigma(float(header["SKYRATE"])), 1.0)).astype(np.float32)


def detectable_halo(event, shape, edge, ngroups):
    """Pixels of a snowball a ramp can record: its core, and where the charge its groups
    see (a last-group snowball's share only) reaches the local ``edge``
    (:func:`halo_edge_dn`)."""
    yy, xx, dn, core = snowball_charge(event, shape)
    seen = dn * (float(event["fraction"]) if int(event["group"]) >= ngroups - 1 else 1.0)
    keep = core | (seen >= edge[yy, xx])
    out = np.zeros(shape, dtype=bool)
    out[yy[keep], xx[keep]] = True
    return out


def snowball_charge(event, shape=(inst.NPIX, inst.NPIX), sensitive=None):
    """Deposited charge (DN) of one snowball: (row indices, column indices, DN, in core).

    Only ``sensitive`` pixels (default: all) collect it: reference pixels have
    no photodiode, so the charge of a snowball at the detector's edge never
    reaches them.
    """
    full_well_dn = 2.0 * inst.SATURATION_LEVEL
    r_out = int(np.ceil(event["outer_radius"]))
    xc, yc = int(round(event["x"])), int(round(event["y"]))
    yy, xx = np.mgrid[yc - r_out:yc + r_out + 1, xc - r_out:xc + r_out + 1]
    r = snowball_radius(event, yy, xx)
    inside = (r <= event["outer_radius"]) & (xx >= 0) & (yy >= 0) & (xx < shape[1]) & (yy < shape[0])
    if sensitive is not None:
        inside[inside] = sensitive[yy[inside], xx[inside]]
    scale = halo_scale(event["core_radius"], event["halo_radius"], event["core_edge_dn"])
    core = r <= event["core_radius"]
    dn = np.where(core, full_well_dn, event["core_edge_dn"] * np.exp(-(r - event["core_radius"]) / scale))
    return yy[inside], xx[inside], dn[inside], core[inside]


def add_snowballs(groups, events, frame_times, sensitive=None):
    """Add snowballs to group values (ngroups, ny, nx, DN): the deposit from its
    arrival on, then the slow release of part of the halo charge (only on
    ``sensitive`` pixels, see :func:`snowball_charge`)."""
    if len(events) == 0:
        return
    shape = groups.shape[1:]
    prompt = group_response(events["time"], frame_times)
    slow = group_response(events["time"], frame_times, tau=RELEASE_TIME)
    parts = [snowball_charge(ev, shape, sensitive) for ev in events]
    which = np.concatenate([np.full(p[0].size, i) for i, p in enumerate(parts)])
    index = np.concatenate([y * shape[1] + x for y, x, _, _ in parts])
    dn = np.concatenate([p[2] for p in parts])
    # The core saturates anyway; the release is a share of the halo's charge.
    released = np.concatenate([np.where(core, 0.0, ev["release"] * q)
                               for ev, (_, _, q, core) in zip(events, parts)])
    _deposit(groups, index, dn, prompt[which])
    _deposit(groups, index, released, slow[which])


# --------------------------------------------------------------------------
# cosmic rays

CR_CHARGE_E = 5200.0  # mean charge per hit (electrons)
CR_TRACK_PIX = 0.8  # mean projected track length (pixels)
CR_DIFFUSION_PIX = 0.35  # charge diffusion (Gaussian sigma, pixels)
IPC = 0.005  # share of a pixel's charge coupled into each of its four neighbours
CR_MIN_E = 20.0  # electrons: pixels below this are not part of a hit's footprint


def cosmic_ray_count(rng, rate, duration, npix=inst.NPIX * inst.NPIX):
    """Number of cosmic-ray events on a detector in ``duration`` seconds.

    ``rate`` is in events per cm^2 per second (about 5 at L2); NIRCam pixels
    are 18 micron, so a full detector (``npix`` pixels) is 13.6 cm^2.
    """
    area_cm2 = npix * inst.PIXEL_PITCH_CM**2
    return int(rng.poisson(rate * area_cm2 * duration))


def _track_footprints(rng, n, half=4, npoints=8):
    """Charge share of each pixel of a (2 half + 1)^2 box around each hit:
    a straight track of random direction and length, blurred by diffusion."""
    length = rng.exponential(CR_TRACK_PIX, n)
    angle = rng.uniform(0, np.pi, n)
    start = rng.uniform(-0.5, 0.5, (n, 2))
    along = (np.arange(npoints) + 0.5) / npoints - 0.5
    px = start[:, 0:1] + length[:, None] * np.cos(angle)[:, None] * along  # (n, npoints)
    py = start[:, 1:2] + length[:, None] * np.sin(angle)[:, None] * along
    edges = np.arange(-half, half + 2) - 0.5

    def profile(p):  # (n, npoints, box): share of a point's charge in each pixel column/row
        c = ndtr((edges[None, None, :] - p[:, :, None]) / CR_DIFFUSION_PIX)
        return np.diff(c, axis=2)

    box = np.einsum("npy,npx->nyx", profile(py), profile(px)) / npoints
    return ipc_couple(box, IPC)


def ipc_couple(boxes, ipc):
    """Inter-pixel capacitance: ``ipc`` of each pixel's signal shows in each of its
    four neighbours (``boxes`` is (n, ny, nx), each box padded enough to hold it)."""
    coupled = boxes * (1 - 4 * ipc)
    coupled[:, 1:, :] += ipc * boxes[:, :-1, :]
    coupled[:, :-1, :] += ipc * boxes[:, 1:, :]
    coupled[:, :, 1:] += ipc * boxes[:, :, :-1]
    coupled[:, :, :-1] += ipc * boxes[:, :, 1:]
    return coupled


def cosmic_rays(rng, n, frame_times, gain, shape=(inst.NPIX, inst.NPIX), sensitive=None):
    """Cosmic-ray hits of realistic footprint and charge, at random times.

    Charge per hit is log-normal with mean CR_CHARGE_E electrons; each hit
    deposits along a short track, diffuses, and couples into neighbours by
    IPC. Returns a Table with one row per pixel receiving at least CR_MIN_E:
    event number, x, y, arrival time (s), first group holding the charge,
    its share in that group, and the charge (DN, through ``gain``: a value or
    a map in e/DN). Charge spilling onto pixels that are not ``sensitive``
    (the reference pixels) is lost.
    """
    half = 4
    x0 = rng.integers(inst.NREF, shape[1] - inst.NREF, n)
    y0 = rng.integers(inst.NREF, shape[0] - inst.NREF, n)
    charge_e = rng.lognormal(np.log(CR_CHARGE_E) - 0.5, 1.0, n)
    time, group, fraction = arrivals(rng, n, frame_times)
    box = _track_footprints(rng, n, half) * charge_e[:, None, None]
    event, iy, ix = np.nonzero(box >= CR_MIN_E)
    x, y = x0[event] + ix - half, y0[event] + iy - half
    keep = (x >= 0) & (y >= 0) & (x < shape[1]) & (y < shape[0])
    if sensitive is not None:
        keep[keep] = sensitive[y[keep], x[keep]]
    t = Table()
    t["event"] = event[keep]
    t["x"], t["y"] = x[keep], y[keep]
    t["time"] = time[event[keep]]
    t["group"] = group[event[keep]]
    t["fraction"] = fraction[event[keep]]
    gain = gain[t["y"], t["x"]] if np.ndim(gain) else gain  # e/DN, a map or one value
    t["charge"] = (box[event, iy, ix][keep] / gain).astype(np.float32)
    return t


def add_cosmic_rays(groups, hits, frame_times):
    """Add hits to group values (ngroups, ny, nx): charge from its arrival on."""
    index = np.asarray(hits["y"]) * groups.shape[2] + np.asarray(hits["x"])
    _deposit(groups, index, np.asarray(hits["charge"], dtype=float),
             group_response(np.asarray(hits["time"]), frame_times))
