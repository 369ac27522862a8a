"""Mosaics: Image3 with only the resample step, on a fixed pixel grid per pointing.

CEERS drizzled each filter of a pointing onto one fixed grid (square kernel,
pixfrac 1, 0.03 arcsec pixels, inverse-variance weights), the same for every
filter and for the HST mosaics of EGS, so that catalogs are made pixel by
pixel across bands. The DR0.5 grids of pointings 1, 2, 3, 6 and of all four
together are built in (:data:`ceers_nircam.survey.MOSAIC_GRIDS`); any other
grid is given by its crval, crpix, rotation, shape and pixel scale, or
derived to cover a set of images. A derived grid is a window of the DR0.5
frame (same tangent point, rotation and pixel scale, shifted by whole
pixels), so mosaics on it are pixel-aligned with the DR0.5 mosaics.
"""

import dataclasses
import hashlib
import json
import math
import re

import numpy as np

from .. import survey
from ..cli import CeersError, get_logger, option
from ..pipeline import PipelineSettings

log = get_logger("mosaic")

GRID_KEYWORD = "MOSGRID"


@dataclasses.dataclass(frozen=True)
class Grid:
    """An output pixel grid as the resample step takes it.

    ``crpix`` is 0-based (x, y), ``shape`` is (nx, ny), ``rotation`` the
    position angle (deg) of the y axis, ``pixel_scale`` in arcsec.
    """

    name: str
    crval: tuple
    crpix: tuple
    rotation: float
    shape: tuple
    pixel_scale: float = survey.GRID_PIXEL_SCALE

    @classmethod
    def dr05(cls, name):
        """A DR0.5 grid: ``nircam1``, ``nircam2``, ``nircam3``, ``nircam6`` or ``all``."""
        if name not in survey.MOSAIC_GRIDS:
            raise CeersError(f"unknown mosaic grid {name!r}; known: {', '.join(survey.MOSAIC_GRIDS)}")
        crpix, shape = survey.MOSAIC_GRIDS[name]
        return cls(name, survey.GRID_CRVAL, crpix, survey.GRID_ROTATION, shape)

    @classmethod
    def read(cls, path):
        """A grid saved by :meth:`write` (JSON)."""
        try:
            with open(path) as fh:
                values = json.load(fh)
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except FileNotFoundError:
            raise CeersError(f"{path}: no such grid file") from None
        except (OSError, ValueError, TypeError, AttributeError) as err:
            raise CeersError(f"{path}: not a grid file ({err})") from None

    def write(self, path):
        """Save the grid as JSON (atomically)."""
        from ..fitsio import atomic_path

        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            json.dump(dataclasses.asdict(self), fh, indent=1)
        return path

    def wcs(self):
        """The grid's FITS WCS (astropy)."""
        return survey.tangent_wcs(self.crval, self.crpix, self.rotation, self.pixel_scale,
                                  self.shape)

    def replace(self, **changes):
        """A copy with some values changed; a changed DR0.5 grid gets a name of its own."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        grid = dataclasses.replace(self, **changes)
        return dataclasses.replace(grid, name=grid.digest_name()) if "name" not in changes else grid

    def digest_name(self):
        """``custom-<hash>``: a name that changes with any grid value."""
        values = dataclasses.asdict(self)
        values.pop("name")
        digest = hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]
        return f"custom-{digest}"

    def resample_parameters(self):
        """The resample step's (parameter, value) pairs for this grid."""
        return (("crval", list(self.crval)), ("crpix", list(self.crpix)),
                ("rotation", self.rotation), ("output_shape", list(self.shape)),
                ("pixel_scale", self.pixel_scale))

    def offset_in(self, other):
        """(dx, dy) whole pixels with ``other`` pixel = this pixel + (dx, dy), or None when
        the two grids are not windows of one frame."""
        if (not np.allclose(self.crval, other.crval, rtol=0, atol=1e-10)
                or not math.isclose(self.rotation, other.rotation, abs_tol=1e-9)
                or not math.isclose(self.pixel_scale, other.pixel_scale, rel_tol=1e-9)):
            return None
        d = np.subtract(other.crpix, self.crpix)
        if not np.allclose(d, np.round(d), atol=1e-6):
            return None
        return int(round(d[0])), int(round(d[1]))


def cover_grid(footprints, frame, margin=20):
    """The window of ``frame`` that covers every footprint (arrays of RA, Dec corners).

    Whole pixels of the frame, ``margin`` added on every side: the result
    depends only on the footprints given, so every filter of a pointing,
    given the same images, gets the same grid.
    """
    w = frame.wcs()
    xs, ys = [], []
    for ra, dec in footprints:
        x, y = w.all_world2pix(np.asarray(ra, float), np.asarray(dec, float), 0)
        xs.append(x)
        ys.append(y)
    if not xs:
        raise CeersError("no images to cover")
    x, y = np.concatenate(xs), np.concatenate(ys)
    x0, y0 = int(np.floor(x.min())) - margin, int(np.floor(y.min())) - margin
    x1, y1 = int(np.ceil(x.max())) + margin, int(np.ceil(y.max())) + margin
    grid = dataclasses.replace(frame, crpix=(frame.crpix[0] - x0, frame.crpix[1] - y0),
                               shape=(x1 - x0 + 1, y1 - y0 + 1))
    return dataclasses.replace(grid, name=grid.digest_name())


def image_footprint(path):
    """(RA, Dec) corners of an image, from its S_REGION polygon (SCI header)."""
    from astropy.io import fits

    try:
        region = fits.getheader(path, "SCI").get("S_REGION", "")
    except (OSError, KeyError) as err:
        raise CeersError(f"{path}: cannot read its SCI header ({err})") from None
    numbers = [float(v) for v in re.findall(r"[-+]?\d+\.?\d*(?:[eE][-+]?\d+)?", region)]
    if not region.upper().startswith("POLYGON") or len(numbers) < 6 or len(numbers) % 2:
        raise CeersError(f"{path}: no S_REGION polygon to derive a grid from")
    corners = np.array(numbers).reshape(-1, 2)
    return corners[:, 0], corners[:, 1]


def images_of(paths):
    """Image paths from a list of images and Level-3 associations (their members)."""
    from .associations import members

    out = []
    for path in paths:
        if path.endswith(".json"):
            out += members(path)[1]
        else:
            out.append(path)
    return out


def pointing_of(product):
    """The DR0.5 grid of an association product ``ceers_nircam2b_f200w`` -> ``nircam2``."""
    found = re.search(r"nircam(\d+)", product or "")
    return f"nircam{found.group(1)}" if found else None


# --------------------------------------------------------------------------
# the pipeline


def mosaic_settings(grid, kernel="square", pixfrac=1.0, weight_type="ivm"):
    """calwebb_image3 with every step but resample skipped, drizzling onto ``grid``."""
    resample = (("kernel", kernel), ("pixfrac", pixfrac), ("weight_type", weight_type),
                *grid.resample_parameters())
    return PipelineSettings(f"image3_mosaic_{grid.name}", "jwst.pipeline.Image3Pipeline", (
        ("assign_mtwcs", (("skip", True),)),
        ("tweakreg", (("skip", True),)),
        ("skymatch", (("skip", True),)),
        ("outlier_detection", (("skip", True),)),
        ("resample", resample),
        ("source_catalog", (("skip", True),)),
    ))


@dataclasses.dataclass(frozen=True)
class MosaicParams:
    """Options of stage3/make_mosaic.py."""

    grid: str = option("", "a DR0.5 grid (nircam1, nircam2, nircam3, nircam6, all) or a grid "
                           "file written by --save_grid (default: the association's pointing)")
    cover: tuple = option((), "derive the grid: the window of the DR0.5 frame covering these "
                              "images or associations (give every filter's, so that all share it)",
                          nargs="+", type=str)
    margin: int = option(20, "pixels added around the images with --cover")
    crval: tuple = option(None, "grid tangent point RA Dec (deg)", nargs=2, type=float)
    crpix: tuple = option(None, "grid reference pixel x y (0-based)", nargs=2, type=float)
    rotation: float = option(None, "grid position angle of the y axis (deg)")
    output_shape: tuple = option(None, "grid size nx ny", nargs=2, type=int)
    pixel_scale: float = option(None, "grid pixel scale (arcsec)")
    save_grid: str = option("", "write the grid used to this JSON file (for --grid)")
    output_dir: str = option("mosaics", "where the _i2d.fits mosaic goes")
    parameter_file: str = option("", "strun parameter file to use as it is (default: "
                                     "image3_mosaic_<grid>_<jwst version>.asdf, written beside the "
                                     "association)")
    kernel: str = option("square", "drizzle kernel", choices=("square", "point", "turbo",
                                                                "gaussian", "lanczos2", "lanczos3"))
    pixfrac: float = option(1.0, "drizzle pixfrac")
    weight_type: str = option("ivm", "drizzle weights", choices=("ivm", "exptime"))
    overwrite: bool = option(False, "redo a mosaic that is already complete")


def choose_grid(params, product):
    """The grid a mosaic goes on: --cover, else --grid (name or file), else the pointing's;
    explicit values (--crval ...) override."""
    if params.cover:
        base_name = params.grid if params.grid in survey.MOSAIC_GRIDS else "all"
        footprints = [image_footprint(p) for p in images_of(params.cover)]
        grid = cover_grid(footprints, Grid.dr05(base_name), params.margin)
    elif params.grid.endswith(".json"):
        grid = Grid.read(params.grid)
    else:
        name = params.grid or pointing_of(product)
        if not name:
            raise CeersError(f"{product}: no pointing in the product name; give --grid")
        grid = Grid.dr05(name)
    return grid.replace(crval=params.crval, crpix=params.crpix, rotation=params.rotation,
                        shape=params.output_shape, pixel_scale=params.pixel_scale)


def grid_of_header(header):
    """The grid of a mosaic, from the FITS WCS of its SCI header."""
    from astropy.wcs import WCS

    try:
        w = WCS(header)
        cd = w.wcs.cd if w.wcs.has_cd() else w.wcs.get_pc() * w.wcs.cdelt[:, None]
    except Exception as err:  # astropy raises several kinds for a bad header
        raise CeersError(f"no usable WCS ({err})") from None
    scale = float(np.sqrt(abs(np.linalg.det(cd)))) * 3600.0
    rotation = float(np.degrees(np.arctan2(cd[1, 0], cd[1, 1])))
    shape = (int(header["NAXIS1"]), int(header["NAXIS2"]))
    crpix = (float(w.wcs.crpix[0]) - 1.0, float(w.wcs.crpix[1]) - 1.0)
    return Grid(str(header.get(GRID_KEYWORD, "")), tuple(float(v) for v in w.wcs.crval), crpix,
                rotation, shape, round(scale, 9))


def same_grid(a, b, tol_pix=1e-3):
    """True if two grids put every pixel at the same place (within ``tol_pix``)."""
    if tuple(a.shape) != tuple(b.shape):
        return False
    offset = a.offset_in(b)
    if offset is not None:
        return offset == (0, 0)
    wa, wb = a.wcs(), b.wcs()
    nx, ny = a.shape
    x = np.array([0, nx - 1, 0, nx - 1, (nx - 1) / 2])
    y = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2])
    xb, yb = wb.all_world2pix(*wa.all_pix2world(x, y, 0), 0)
    return bool(np.all(np.hypot(xb - x, yb - y) < tol_pix))


def grid_owner(grid):
    """The DR0.5 grid a grid is (or is a window of): (name, exact) or (None, False)."""
    for name in survey.MOSAIC_GRIDS:
        dr05 = Grid.dr05(name)
        offset = grid.offset_in(dr05)
        if offset is not None and offset == (0, 0) and tuple(grid.shape) == tuple(dr05.shape):
            return name, True
    return None, False


def check_pointing(grid, pointing, path):
    """Raise unless a mosaic's grid is its pointing's DR0.5 grid or lies inside it."""
    owner, exact = grid_owner(grid)
    if exact and owner != pointing:
        raise CeersError(f"{path}: mosaic on the {owner} grid, not {pointing}'s")
    if exact:
        return
    # A window or another grid: its centre must fall on the pointing's grid.
    nx, ny = grid.shape
    ra, dec = grid.wcs().all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0)
    px, py = Grid.dr05(pointing).wcs().all_world2pix(ra, dec, 0)
    pnx, pny = Grid.dr05(pointing).shape
    if not (0 <= px <= pnx - 1 and 0 <= py <= pny - 1):
        raise CeersError(f"{path}: mosaic grid {grid.name or '(unnamed)'} lies outside "
                         f"{pointing}'s grid")


def mark_grid(grid):
    """An ``edit`` for :func:`ceers_nircam.pipeline.run_strun`: the grid's name as MOSGRID."""
    def edit(model):
        extra = model.extra_fits.instance if model.hasattr("extra_fits") else {}
        cards = [c for c in extra.get("PRIMARY", {}).get("header", []) if c[0] != GRID_KEYWORD]
        cards.append([GRID_KEYWORD, grid.name, "mosaic pixel grid (ceers-nircam)"])
        extra.setdefault("PRIMARY", {})["header"] = cards
        model.extra_fits = extra

    return edit
