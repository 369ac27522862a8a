"""CEERS survey facts shared by the simulator, the stage-3 mosaics and the downloader.

The DR0.5 mosaic grids put every filter of a pointing (and the HST mosaics of
EGS) on the same pixels: 0.03 arcsec pixels, one tangent point and rotation
for all pointings.
"""

import numpy as np
from astropy.wcs import WCS

PROGRAM = "01345"
# The seven CEERS NIRCam filters, short wave first.
FILTERS = ("F115W", "F150W", "F200W", "F277W", "F356W", "F410M", "F444W")
GRID_CRVAL = (214.825, 52.825)
GRID_ROTATION = -49.7  # deg, position angle of the output y axis
GRID_PIXEL_SCALE = 0.03  # arcsec

# name -> (crpix 0-based (x, y), output shape (nx, ny)), as the resample step takes them.
MOSAIC_GRIDS = {
    "nircam1": ((26678.5, -724.5), (10600, 4800)),
    "nircam2": ((16680.5, 922.5), (11000, 6450)),
    "nircam3": ((6588.5, -814.5), (10500, 4800)),
    "nircam6": ((7351.5, 3500.5), (10500, 4800)),
    "all": ((31584.5, 9043.5), (46200, 15400)),
}

# Position angle of the telescope V3 axis in epoch 1 (June 2022): the
# detector axes then lie along the mosaic grid's axes.
EPOCH1_PA_V3 = GRID_ROTATION + 180.0


def tangent_wcs(crval, crpix, rotation, pixel_scale, shape):
    """A FITS TAN WCS as the resample step builds its output grid: ``crpix`` 0-based (x, y),
    ``rotation`` the position angle (deg) of the y axis, ``pixel_scale`` in arcsec, ``shape``
    (nx, ny)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = crval
    w.wcs.crpix = [crpix[0] + 1.0, crpix[1] + 1.0]
    theta = np.deg2rad(rotation)
    scale = pixel_scale / 3600.0
    w.wcs.cd = scale * np.array([[-np.cos(theta), np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    w.pixel_shape = tuple(shape)
    return w


def grid_wcs(name):
    """A FITS WCS of a DR0.5 mosaic grid (``nircam1`` ... ``all``)."""
    try:
        crpix, shape = MOSAIC_GRIDS[name]
    except KeyError:
        raise KeyError(f"unknown mosaic grid {name!r}; known: {', '.join(MOSAIC_GRIDS)}") from None
    return tangent_wcs(GRID_CRVAL, crpix, GRID_ROTATION, GRID_PIXEL_SCALE, shape)


def pointing_centre(name):
    """(RA, Dec) in degrees of the centre of a pointing's mosaic grid."""
    w = grid_wcs(name)
    nx, ny = w.pixel_shape
    sky = w.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
    return float(sky[0]), float(sky[1])
