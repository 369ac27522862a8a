"""NIRCam detector facts that every step needs.

Amplifier layout, reference pixels, readout directions and timing, and where
the wisps fall. Both the reduction steps and the simulator read them from
here, so a step never has to import the simulator to know its detector.
"""

import numpy as np

from . import survey

NPIX = 2048
NREF = 4  # reference pixels on every edge of a full-frame detector
NAMPS = 4
AMP_WIDTH = NPIX // NAMPS

SW_DETECTORS = ("NRCA1", "NRCA2", "NRCA3", "NRCA4", "NRCB1", "NRCB2", "NRCB3", "NRCB4")
LW_DETECTORS = ("NRCALONG", "NRCBLONG")
DETECTORS = SW_DETECTORS + LW_DETECTORS

FILTERS = survey.FILTERS
SW_FILTERS = tuple(f for f in FILTERS if int(f[1:4]) < 250)  # 0.6-2.3 um channel
LW_FILTERS = tuple(f for f in FILTERS if f not in SW_FILTERS)

PIXEL_SCALE = {"SHORT": 0.0311, "LONG": 0.0629}  # arcsec per pixel

# Readout directions (FASTAXIS, SLOWAXIS header values) in the science frame:
# detectors alternate, as in flight headers, so that x is always the fast axis.
READOUT_AXES = {
    "NRCA1": (-1, 2), "NRCA2": (1, -2), "NRCA3": (-1, 2), "NRCA4": (1, -2), "NRCALONG": (-1, 2),
    "NRCB1": (1, -2), "NRCB2": (-1, 2), "NRCB3": (1, -2), "NRCB4": (-1, 2), "NRCBLONG": (1, -2),
}
PIXEL_TIME = 1.0e-5  # s per pixel clock (100 kHz)
ROW_OVERHEAD = 12  # pixel clocks at the end of every row
FRAME_ROW_OVERHEAD = 1  # rows' worth of clocks at the end of every frame

# The detectors and filters with wisps (scattered light from the secondary
# mirror struts), and the region (x0, x1, y0, y1) where each detector's lies.
WISP_DETECTORS = ("NRCA3", "NRCA4", "NRCB3", "NRCB4")
WISP_FILTERS = ("F150W", "F200W")
WISP_REGIONS = {
    "NRCA3": (300, 1300, 1100, 2046),
    "NRCA4": (450, 1450, 0, 600),
    "NRCB3": (700, 1450, 0, 800),
    "NRCB4": (900, 1600, 850, 2046),
}


def channel(detector):
    """'SHORT' or 'LONG' for a detector name."""
    detector = detector.upper()
    if detector not in DETECTORS:
        raise ValueError(f"unknown NIRCam detector {detector!r}; known: {', '.join(DETECTORS)}")
    return "LONG" if detector in LW_DETECTORS else "SHORT"


def filter_channel(filt):
    """'SHORT' or 'LONG' for a filter name."""
    filt = filt.upper()
    if filt not in FILTERS:
        raise ValueError(f"unknown filter {filt!r}; known: {', '.join(FILTERS)}")
    return "LONG" if filt in LW_FILTERS else "SHORT"


def module(detector):
    """NIRCam module letter ('A' or 'B')."""
    return detector.upper()[3]


def frame_time(xsize=NPIX, ysize=NPIX, noutputs=NAMPS):
    """Frame time in seconds for a full-frame or subarray readout."""
    return (xsize / noutputs + ROW_OVERHEAD) * (ysize + FRAME_ROW_OVERHEAD) * PIXEL_TIME


def amp_slices(width=NPIX, noutputs=NAMPS):
    """Column slices of the readout amplifiers of an image ``width`` columns wide."""
    step = width // noutputs
    return [slice(i * step, (i + 1) * step) for i in range(noutputs)]


def science_region():
    """Slices of the light-sensitive pixels of a full frame (reference pixels excluded)."""
    return (slice(NREF, NPIX - NREF), slice(NREF, NPIX - NREF))


def reference_pixel_mask():
    """True on the reference-pixel border of a full-frame detector."""
    border = np.ones((NPIX, NPIX), dtype=bool)
    border[science_region()] = False
    return border


def wisp_region_mask(detector, region=None):
    """True inside a detector's wisp region (all False off the wisp detectors).

    ``region`` is a (rows, cols) slice pair of a subarray; full frame by default.
    """
    mask = np.zeros((NPIX, NPIX), dtype=bool)
    if detector.upper() in WISP_REGIONS:
        x0, x1, y0, y1 = WISP_REGIONS[detector.upper()]
        mask[y0:y1, x0:x1] = True
    return mask if region is None else mask[region]
