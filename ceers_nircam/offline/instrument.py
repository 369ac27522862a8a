"""The synthetic NIRCam: detector layout, readout and calibration constants.

These numbers describe the instrument that both the reference-file builder
(:mod:`ceers_nircam.offline.references`) and the simulator
(:mod:`ceers_nircam.offline.simulate`) use, so that running the real pipeline
on simulated data inverts the simulation exactly. Values are close to the
flight instrument (plate scales, gains, read noise, V2/V3 layout) without
claiming to be its calibration.
"""

import hashlib

import numpy as np

from ..nircam import (AMP_WIDTH, DETECTORS, FILTERS, LW_DETECTORS, LW_FILTERS, NAMPS,  # noqa: F401
                      NPIX, NREF, PIXEL_SCALE, SW_DETECTORS, SW_FILTERS, amp_slices, channel,
                      filter_channel, frame_time, module, reference_pixel_mask, science_region)

PIXEL_PITCH_CM = 18e-4

# Aperture reference points (V2, V3 in arcsec) and V3IdlYAngle (deg), close to SIAF.
DETECTOR_LAYOUT = {
    "NRCA1": (120.67, -527.39, -0.55),
    "NRCA2": (119.17, -459.70, -0.52),
    "NRCA3": (51.50, -527.80, -0.29),
    "NRCA4": (52.51, -459.93, -0.33),
    "NRCALONG": (86.10, -493.23, -0.36),
    "NRCB1": (-120.91, -458.92, 0.31),
    "NRCB2": (-120.11, -526.95, 0.34),
    "NRCB3": (-53.25, -459.41, 0.22),
    "NRCB4": (-52.61, -527.18, 0.18),
    "NRCBLONG": (-89.40, -493.63, 0.10),
}
# The NIRCam field centre between the modules: the attitude reference point.
FIELD_V2V3 = (0.0, -493.4)

GAIN = {"SHORT": 2.05, "LONG": 1.82}  # electrons per DN
READNOISE_CDS = {"SHORT": 7.5, "LONG": 6.5}  # DN, correlated double sample
DARK_CURRENT = 0.0015  # DN/s
SUPERBIAS_LEVEL = 12000.0  # DN
SATURATION_LEVEL = 60000.0  # DN, raw (bias included)
LINEARITY_K = 1.2e-6  # corrected = M + K M^2 for bias-subtracted counts M
MAX_GROUPS = 10  # the dark reference covers up to this many groups
COSMIC_RAY_RATE = 5.0  # events per cm^2 per s at L2

# DN/s -> MJy/sr for a flat-fielded rate image, and a typical zodiacal sky (MJy/sr).
PHOTMJSR = {"F115W": 2.60, "F150W": 2.05, "F200W": 2.20,
            "F277W": 0.52, "F356W": 0.45, "F410M": 1.20, "F444W": 0.50}
SKY_MJYSR = {"F115W": 0.16, "F150W": 0.17, "F200W": 0.19,
             "F277W": 0.14, "F356W": 0.17, "F410M": 0.30, "F444W": 0.35}
# Point-spread function FWHM in arcsec (diffraction-limited NIRCam).
PSF_FWHM = {"F115W": 0.040, "F150W": 0.050, "F200W": 0.066,
            "F277W": 0.092, "F356W": 0.116, "F410M": 0.137, "F444W": 0.145}

# Imaging subarrays of the synthetic instrument: name -> (xstart, ystart, size,
# outputs), 1-based as in the headers. CEERS observed full frame; the small
# subarrays (read through one output, at the detector corner with its
# reference pixels) make fast tests.
SUBARRAYS = {
    "FULL": (1, 1, NPIX, NAMPS),
    "SUB640": (1, 1, 640, 1),
    "SUB320": (1, 1, 320, 1),
    "SUB160": (1, 1, 160, 1),
}

# Readout pattern used by CEERS.
READPATT = "MEDIUM8"
NFRAMES = 8
GROUPGAP = 2


def pixel_area_sr(chan):
    """Nominal pixel solid angle in steradians."""
    return (PIXEL_SCALE[chan] / 206264.80624709636) ** 2




def subarray_region(name):
    """(row slice, column slice) of a subarray in full-frame pixels."""
    xstart, ystart, size, _ = subarray(name)
    return (slice(ystart - 1, ystart - 1 + size), slice(xstart - 1, xstart - 1 + size))


def subarray(name):
    """(xstart, ystart, size, noutputs) of a named subarray."""
    try:
        return SUBARRAYS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown subarray {name!r}; known: {', '.join(SUBARRAYS)}") from None


def subarray_frame_time(name):
    """Frame time of a named subarray's readout."""
    _, _, size, noutputs = subarray(name)
    return frame_time(size, size, noutputs)


def group_time(tframe=None):
    """Time between the starts of consecutive groups."""
    tframe = frame_time() if tframe is None else tframe
    return (NFRAMES + GROUPGAP) * tframe


def frame_times(ngroups, tframe=None):
    """Time (s, from reset) at which each read frame of every group ends.

    Returns an array (ngroups, NFRAMES). Dropped frames (GROUPGAP) accumulate
    charge but are not read.
    """
    tframe = frame_time() if tframe is None else tframe
    g = np.arange(ngroups)[:, None]
    f = np.arange(NFRAMES)[None, :]
    return (g * (NFRAMES + GROUPGAP) + f + 1) * tframe


def group_mean_times(ngroups, tframe=None):
    """Average time of the frames averaged into each group."""
    return frame_times(ngroups, tframe).mean(axis=1)


def linearize(counts, coeffs):
    """Linear counts from raw bias-subtracted counts: the linearity reference's polynomial.

    ``coeffs`` is the reference's COEFFS array (3, ...), c0 + c1 M + c2 M^2.
    """
    c0, c1, c2 = coeffs
    return c0 + c1 * counts + c2 * counts**2


def delinearize(linear, coeffs):
    """Inverse of :func:`linearize`: the raw counts that linearize to ``linear``."""
    c0, c1, c2 = (np.asarray(c, dtype=np.float64) for c in coeffs)
    excess = np.asarray(linear, dtype=np.float64) - c0
    # The root written so that it stays exact as c2 -> 0.
    return 2.0 * excess / (c1 + np.sqrt(c1**2 + 4.0 * c2 * excess))








def keyed_rng(*keys):
    """A generator seeded by names: reproducible references, and one draw shared by
    everything with the same keys (a visit's pointing error, say)."""
    digest = hashlib.sha256("/".join(str(k) for k in keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def superbias_image():
    """Bias level with column-to-column structure and pixel scatter (DN)."""
    rng = keyed_rng("superbias")
    cols = rng.normal(0.0, 150.0, NPIX).astype(np.float32)
    amps = np.repeat(rng.normal(0.0, 400.0, NAMPS), AMP_WIDTH).astype(np.float32)
    pix = rng.normal(0.0, 40.0, (NPIX, NPIX)).astype(np.float32)
    return (SUPERBIAS_LEVEL + cols + amps)[None, :] + pix


def flat_image(filt):
    """Flat field for a filter: smooth large-scale response times pixel response."""
    rng = keyed_rng("flat", filt)
    y, x = np.mgrid[0:NPIX, 0:NPIX].astype(np.float32) / NPIX - 0.5
    a = rng.normal(0.0, 0.02, 5)
    smooth = 1.0 + a[0] * x + a[1] * y + a[2] * x * y + a[3] * (x**2 - 1 / 12) + a[4] * (y**2 - 1 / 12)
    pix = rng.normal(1.0, 0.01, (NPIX, NPIX))
    return (smooth * pix).astype(np.float32)


def bad_pixels(detector, fraction=5e-4):
    """Dead and hot pixel positions of a detector (row, column index arrays), for its mask.

    Returns ``(dead, hot)``, each a tuple of index arrays inside the science area.
    """
    rng = keyed_rng("badpix", detector)
    n = int(fraction * NPIX * NPIX)
    lo, hi = NREF, NPIX - NREF
    dead = (rng.integers(lo, hi, n), rng.integers(lo, hi, n))
    hot = (rng.integers(lo, hi, n), rng.integers(lo, hi, n))
    return dead, hot


def hot_pixel_rate(detector, n):
    """Dark current (DN/s) of a detector's ``n`` hot pixels, in the mask's row-major order."""
    return keyed_rng("hotrate", detector).uniform(0.5, 5.0, n)
