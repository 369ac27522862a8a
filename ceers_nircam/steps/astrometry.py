"""Astrometric alignment of one visit and filter with the pipeline's TweakReg.

CEERS aligned each visit and filter in two stages, both done here by
``jwst.tweakreg.TweakRegStep`` on user catalogs (:mod:`.sourcecat`):

1. relative: within each detector, the dithers are aligned to one another
   with shifts only (the exposures of one detector share its distortion,
   so only the small per-exposure pointing differences remain);
2. absolute: each detector's images, now one rigid group, are aligned to an
   absolute reference catalog (CEERS: HST F160W sources in EGS) with shift
   and rotation (short wave) or shift, rotation and scale (long wave).

TweakReg is run twice per detector (relative, then absolute with the
detector's images in one group) by a subclass that keeps the tweakwcs fit
results (``fit_info``: matches, RMS, MAE, shift, rotation, scale) that the
step computes and then discards. The results table is made from those, not
from log text. For the absolute pass each source is listed in one dither's
catalog only (:func:`group_catalogs`): TweakReg matches the group as one
catalog, one detection to each reference source, and among a source's
detections in several dithers it would take the one nearest to where its
first guess of the offset puts the reference, which pulls the fit towards
that guess.

Parameters come from CEERS's per-filter INI files, one section per visit.
TweakReg silently skips a fit whose separation is not larger than sqrt(2)
times its tolerance (the matching would confuse sources); 10 of the 28 DR0.5
files ask for that, so it is checked before anything runs.
"""

import configparser
import dataclasses
import math
import os

import numpy as np
from astropy.table import Table

from .. import names, nircam
from ..cli import CeersError, get_logger, option
from ..fitsio import atomic_path
from .sourcecat import DetectionParams

log = get_logger("astrometry")

SQRT2 = math.sqrt(2.0)
FITGEOMS = ("shift", "rshift", "rscale", "general")
RELATIVE, ABSOLUTE = "relative", "absolute"
# Detections of different dithers closer than this (arcsec) are one source.
DUPLICATE_RADIUS = 0.1


@dataclasses.dataclass(frozen=True)
class AlignmentParams(DetectionParams):
    """One section of a CEERS TweakReg config file (source finding, relative, absolute)."""

    minobj: int = option(20, "relative: minimum matched sources")
    searchrad: float = option(1.0, "relative: search radius (arcsec)")
    separation: float = option(0.2, "relative: minimum source separation (arcsec)")
    tolerance: float = option(0.1, "relative: matching tolerance (arcsec)")
    nclip: int = option(1, "relative: clipping iterations")
    sigma: float = option(0.6, "relative: clipping limit (rms)")
    abs_minobj: int = option(20, "absolute: minimum matched sources")
    abs_searchrad: float = option(1.0, "absolute: search radius (arcsec)")
    abs_separation: float = option(0.6, "absolute: minimum source separation (arcsec)")
    abs_tolerance: float = option(0.4, "absolute: matching tolerance (arcsec)")
    abs_nclip: int = option(1, "absolute: clipping iterations")
    abs_sigma: float = option(0.8, "absolute: clipping limit (rms)")
    abs_fitgeom: str = option("", "absolute: fit geometry (default rshift short wave, rscale long wave)",
                              choices=FITGEOMS)

    def detection(self):
        """The source-finding part."""
        names = [f.name for f in dataclasses.fields(DetectionParams)]
        return DetectionParams(**{n: getattr(self, n) for n in names})


def default_fitgeom(filt):
    """CEERS's absolute fit geometry: rshift for short wave, rscale for long wave."""
    return "rscale" if nircam.filter_channel(filt) == "LONG" else "rshift"


def _convert(field, text, where):
    kind = field.type
    try:
        value = kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
    except ValueError:
        raise CeersError(f"{where}: {field.name} = {text!r} is not a valid {kind.__name__}") from None
    if field.metadata.get("choices") and value not in field.metadata["choices"]:
        raise CeersError(f"{where}: {field.name} = {value!r}; expected one of "
                         f"{', '.join(field.metadata['choices'])}")
    return value


def read_config(path, visit, filt):
    """The parameters of ``visit`` (``jw01345001001``) in a CEERS TweakReg config file.

    Keys missing from the section keep their defaults (the DR0.5 values of
    the spec); an unknown key is an error, so a misspelt one is never
    silently ignored.
    """
    if not os.path.isfile(path):
        raise CeersError(f"{path}: no such config file")
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    try:
        parser.read(path)
    except configparser.Error as err:
        raise CeersError(f"{path}: not a readable config file ({str(err).splitlines()[0]})") from None
    if visit not in parser:
        sections = ", ".join(parser.sections()) or "none"
        raise CeersError(f"{path}: no section [{visit}] (sections: {sections})")
    fields = {f.name: f for f in dataclasses.fields(AlignmentParams)}
    values = {}
    for key, text in parser[visit].items():
        if key not in fields:
            raise CeersError(f"{path} [{visit}]: unknown key {key!r}")
        values[key] = _convert(fields[key], text.strip(), f"{path} [{visit}]")
    if not values.get("abs_fitgeom"):
        values["abs_fitgeom"] = default_fitgeom(filt)
    return AlignmentParams(**values)


def largest_tolerance(separation):
    """The largest tolerance (to 0.001 arcsec) that TweakReg accepts with ``separation``."""
    tol = math.floor(separation / SQRT2 * 1000.0) / 1000.0
    return tol - 0.001 if separation <= SQRT2 * tol else tol


def check_tolerances(params, path, visit, adjust=False):
    """Stop on a separation TweakReg would silently refuse, or lower the tolerance if asked.

    TweakReg skips a fit unless separation > sqrt(2) x tolerance (two
    sources closer than the separation could both match within the
    tolerance). Returns ``(params, messages)``: the parameters to run with
    and one message per tolerance that was lowered.
    """
    changes, messages = {}, []
    for prefix, what in (("", "relative"), ("abs_", "absolute")):
        sep, tol = getattr(params, f"{prefix}separation"), getattr(params, f"{prefix}tolerance")
        if sep > SQRT2 * tol:
            continue
        rule = (f"{prefix}separation {sep:g} <= sqrt(2) x {prefix}tolerance {tol:g} = "
                f"{SQRT2 * tol:.3f}")
        if not adjust:
            raise CeersError(f"{path} [{visit}]: {rule}, so TweakReg would skip the {what} "
                             f"alignment; raise {prefix}separation or lower {prefix}tolerance, or "
                             f"pass --adjust_tolerance")
        new = largest_tolerance(sep)
        changes[f"{prefix}tolerance"] = new
        messages.append(f"{path} [{visit}]: {rule}; {prefix}tolerance lowered to {new:g} "
                        f"(--adjust_tolerance)")
    return dataclasses.replace(params, **changes), messages


def read_refcat(path):
    """An absolute reference catalog with RA and DEC columns (any case), as TweakReg reads it."""
    try:
        table = Table.read(path)
    except FileNotFoundError:
        raise CeersError(f"{path}: no such reference catalog") from None
    except Exception as err:  # astropy raises many types for unreadable tables
        raise CeersError(f"{path}: cannot read reference catalog ({type(err).__name__})") from None
    upper = [c.upper() for c in table.colnames]
    missing = [c for c in ("RA", "DEC") if upper.count(c) != 1]
    if missing:
        raise CeersError(f"{path}: reference catalog needs one {' and one '.join(missing)} column")
    for name in table.colnames:
        if name.upper() in ("RA", "DEC"):
            table.rename_column(name, name.upper())
    if len(table) == 0:
        raise CeersError(f"{path}: reference catalog is empty")
    return table


# --------------------------------------------------------------------------
# TweakReg with its fit results kept


def _recording_step_class():
    from jwst.tweakreg.tweakreg_step import TweakRegStep

    if not hasattr(TweakRegStep, "_apply_tweakreg_solution"):
        raise CeersError("the installed jwst's TweakRegStep has no _apply_tweakreg_solution; "
                         "this version is not supported")

    class RecordingTweakRegStep(TweakRegStep):
        """TweakRegStep that keeps each image's tweakwcs fit results (``fit_info``)."""

        fits = None

        def _apply_tweakreg_solution(self, images, correctors, align_to_abs_refcat=False):
            # The correctors hold the fit results of the alignment just made, in
            # the order of the images; the step applies them and drops them.
            self.fits = [dict(c.meta.get("fit_info", {"status": "SKIPPED"})) for c in correctors]
            return super()._apply_tweakreg_solution(images, correctors,
                                                    align_to_abs_refcat=align_to_abs_refcat)

    return RecordingTweakRegStep


def tweakreg_parameters(params, kind, catfile, refcat=None):
    """TweakRegStep parameters of the relative or the absolute pass."""
    pars = {"use_custom_catalogs": True, "catfile": catfile, "sip_approx": kind == ABSOLUTE}
    if kind == RELATIVE:
        pars.update(fitgeometry="shift", minobj=params.minobj, searchrad=params.searchrad,
                    separation=params.separation, tolerance=params.tolerance,
                    nclip=params.nclip, sigma=params.sigma, abs_refcat="")
    else:
        pars.update(abs_refcat=refcat, abs_minobj=params.abs_minobj,
                    abs_searchrad=params.abs_searchrad, abs_separation=params.abs_separation,
                    abs_tolerance=params.abs_tolerance, abs_nclip=params.abs_nclip,
                    abs_sigma=params.abs_sigma, abs_fitgeometry=params.abs_fitgeom)
    return pars


def run_tweakreg(models, pars):
    """Run TweakReg on datamodels; return (aligned models, fit results per model or None)."""
    from jwst.datamodels import ModelLibrary

    step = _recording_step_class()(**pars)
    library = step.run(ModelLibrary(models, on_disk=False))
    out = []
    with library:
        for i, model in enumerate(library):
            out.append(model)
            library.shelve(model, i, modify=False)
    return out, step.fits


def write_catalogs(models, catalogs, directory, tag="cat"):
    """Write one ECSV per image and TweakReg's catfile naming them; return the catfile path.

    The catfile is named after the first image: alignments of other filters
    or detectors run at the same time in the same directory, and a catfile
    they share would be rewritten under TweakReg, which then silently
    detects its own sources for the images it does not find listed.
    """
    lines = []
    for model, cat in zip(models, catalogs):
        name = model.meta.filename.replace(".fits", f"_{tag}.ecsv")
        path = os.path.join(os.path.abspath(directory), name)
        cat.write(path, format="ascii.ecsv", overwrite=True)
        lines.append(f"{model.meta.filename} {path}")
    stem = os.path.splitext(models[0].meta.filename)[0]
    catfile = os.path.join(directory, f"{stem}_{tag}_catfile.txt")
    with atomic_path(catfile) as tmp, open(tmp, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return catfile


def unique_sources(ra, dec, weights, radius):
    """Which detections to keep so that each source on the sky is listed once.

    ``ra``, ``dec``, ``weights`` are lists (one array per image) of sky
    positions (deg) and centroid weights; detections closer than ``radius``
    arcsec are taken as one source, and the one with the largest weight is
    kept. Returns one boolean array per image.
    """
    from scipy.spatial import cKDTree

    sizes = [len(r) for r in ra]
    if not sum(sizes):
        return [np.zeros(0, bool) for _ in sizes]
    ra, dec, w = (np.concatenate(a).astype(float) for a in (ra, dec, weights))
    cosd = np.cos(np.deg2rad(np.median(dec)))
    xy = np.column_stack([(ra - np.median(ra)) * cosd, dec - np.median(dec)]) * 3600.0
    tree = cKDTree(xy)
    keep = np.zeros(len(w), bool)
    taken = np.zeros(len(w), bool)
    for i in np.argsort(-w, kind="stable"):
        if taken[i]:
            continue
        keep[i] = True
        taken[tree.query_ball_point(xy[i], radius)] = True
    return np.split(keep, np.cumsum(sizes)[:-1])


def group_catalogs(models, catalogs, radius=None):
    """The catalogs of a detector's dithers with every source in one of them only.

    TweakReg fits a group of images to the reference catalog as one catalog
    and matches one detection to each reference source: of a source seen in
    three dithers it takes the detection nearest to where its first guess
    of the offset puts the reference, so the matched sample leans towards
    that guess and so does the fit (on a simulated pointing, by 5-10 mas).
    Each source is therefore kept in the dither where its centroid weighs
    most (positions through the relatively aligned WCS; ``radius`` arcsec,
    default :data:`DUPLICATE_RADIUS`).
    """
    radius = DUPLICATE_RADIUS if radius is None else radius
    ra, dec, weights = [], [], []
    for model, cat in zip(models, catalogs):
        r, d = model.meta.wcs(np.asarray(cat["x"], float), np.asarray(cat["y"], float))
        ra.append(np.atleast_1d(r))
        dec.append(np.atleast_1d(d))
        weights.append(np.asarray(cat["weight"], float) if "weight" in cat.colnames
                       else np.ones(len(cat)))
    keep = unique_sources(ra, dec, weights, radius)
    return [cat[k] for cat, k in zip(catalogs, keep)]


def _root(model):
    return names.exposure_root(model.meta.filename)


def result_row(kind, name, detector, nimages, fit, pixel_scale):
    """One row of the results table from a tweakwcs ``fit_info``.

    The fit works in a tangent plane in arcsec: shifts, RMS and MAE are
    given in milliarcsec, and the shift also in pixels.
    """
    status = str(fit.get("status", "SKIPPED"))
    row = {"fit": kind, "name": name, "detector": detector, "nimages": nimages, "status": status,
           "fitgeom": str(fit.get("fitgeom", "")), "nmatches": int(fit.get("nmatches", 0)),
           "nfit": int(np.sum(fit["fitmask"])) if "fitmask" in fit else 0}
    ok = status == "SUCCESS"
    shift = np.asarray(fit["shift"], float) if ok else np.full(2, np.nan)
    row["rms_mas"] = float(fit["rmse"]) * 1000.0 if ok else np.nan
    row["mae_mas"] = float(fit["mae"]) * 1000.0 if ok else np.nan
    row["xshift_mas"], row["yshift_mas"] = shift * 1000.0
    row["shift_pix"] = float(np.hypot(*shift) / pixel_scale) if ok else np.nan
    row["rotation_deg"] = float(fit["<rot>"]) if ok else np.nan
    row["scale"] = float(fit["<scale>"]) if ok else np.nan
    return row


def results_table(rows, visit, filt):
    """The results table of a visit and filter (one row per image fit and per group fit)."""
    names = ("fit", "name", "detector", "nimages", "status", "fitgeom", "nmatches", "nfit",
             "rms_mas", "mae_mas", "xshift_mas", "yshift_mas", "shift_pix", "rotation_deg", "scale")
    table = Table(rows=[[r[n] for n in names] for r in rows], names=names) if rows else Table(
        names=names)
    table.meta["visit"] = visit
    table.meta["filter"] = filt
    table.meta["comments"] = [
        "TweakReg fit results (tweakwcs fit_info) per image (relative: shift-only alignment of a "
        "detector's dithers) and per detector group (absolute: alignment to the reference catalog).",
        "Shifts, RMS and MAE in the fit's tangent plane, milliarcsec; rotation in degrees.",
        "Relative fits: the reference image of each detector has status REFERENCE."]
    for col in ("rms_mas", "mae_mas", "xshift_mas", "yshift_mas", "shift_pix", "rotation_deg",
                "scale"):
        table[col].format = ".4f" if col in ("rotation_deg",) else ".6f" if col == "scale" else ".2f"
    return table


def _reset_group_ids(models):
    # The absolute pass put a detector's images in one group; Image3 must see
    # one group per exposure again (its outlier detection works by exposure).
    from jwst.datamodels.utils import attrs_to_group_id

    for model in models:
        model.meta.group_id = attrs_to_group_id(model.meta.observation)


def align_detector(models, catalogs, params, refcat, directory, pixel_scale):
    """Relative then absolute alignment of one detector's images.

    ``catalogs`` are the images' source catalogs; they are written to
    ``directory`` for TweakReg. Returns (aligned models, result rows,
    absolute fit_info).
    """
    detector = models[0].meta.instrument.detector
    rows = []
    if len(models) > 1:
        catfile = write_catalogs(models, catalogs, directory)
        models, fits = run_tweakreg(models, tweakreg_parameters(params, RELATIVE, catfile))
        for model, fit in zip(models, fits or [{}] * len(models)):
            fit = fit or {"status": "FAILED: TweakReg skipped the relative alignment (see its log)"}
            rows.append(result_row(RELATIVE, _root(model), detector, 1, fit, pixel_scale))
    catfile = write_catalogs(models, group_catalogs(models, catalogs), directory, "abscat")
    for model in models:
        model.meta.group_id = f"{detector.lower()}_group"
    models, fits = run_tweakreg(models, tweakreg_parameters(params, ABSOLUTE, catfile, refcat))
    fit = (fits or [{}])[0] or {"status": "FAILED: TweakReg skipped the absolute alignment (see its log)"}
    _reset_group_ids(models)
    rows.append(result_row(ABSOLUTE, detector.lower(), detector, len(models), fit, pixel_scale))
    return models, rows, fit


def failures(rows):
    """Text of every fit that did not succeed (the relative reference image is not a failure)."""
    return [f"{r['fit']} {r['name']}: {r['status']}" for r in rows
            if r["status"] not in ("SUCCESS", "REFERENCE")]


def residuals(fit, refcat):
    """Matched reference positions and fit residuals (arcsec) of an absolute fit.

    ``fit_RA``/``fit_DEC`` are the aligned positions of the sources the fit
    kept; ``matched_ref_idx`` (restricted to ``fitmask``) names their
    reference-catalog counterparts.
    """
    ref_idx = np.asarray(fit["matched_ref_idx"])[np.asarray(fit["fitmask"], bool)]
    ra_ref = np.asarray(refcat["RA"], float)[ref_idx]
    dec_ref = np.asarray(refcat["DEC"], float)[ref_idx]
    cosd = np.cos(np.deg2rad(dec_ref))
    dra = (np.asarray(fit["fit_RA"]) - ra_ref) * cosd * 3600.0
    ddec = (np.asarray(fit["fit_DEC"]) - dec_ref) * 3600.0
    return ra_ref, dec_ref, dra, ddec


def plot_residuals(path, fit, refcat, title):
    """PNG of the residual vectors of an absolute fit (arrows magnified), with their histogram."""
    from .. import figures

    ra, dec, dra, ddec = residuals(fit, refcat)
    cosd = np.cos(np.deg2rad(np.median(dec)))
    x = (ra - np.median(ra)) * cosd * 3600.0
    y = (dec - np.median(dec)) * 3600.0
    fig, (ax, hx) = figures.pyplot().subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [1.4, 1]})
    mag = 500.0  # arrow length per arcsec of residual, in arcsec on the plot
    q = ax.quiver(x, y, dra, ddec, angles="xy", scale_units="xy", scale=1.0 / mag, width=0.003,
                  color="tab:blue")
    pad = 0.12 * (np.ptp(y) + 1.0)
    ax.set_xlim(np.max(x) + pad, np.min(x) - pad)  # east to the left
    ax.set_ylim(np.min(y) - pad, np.max(y) + 2.5 * pad)  # room for the key
    ax.quiverkey(q, 0.14, 0.95, 0.05, f"50 mas (arrows x{mag:.0f})", labelpos="E",
                 coordinates="axes", fontproperties={"size": 8})
    ax.set_aspect("equal")
    ax.set_xlabel("RA offset (arcsec, east left)")
    ax.set_ylabel("Dec offset (arcsec)")
    ax.set_title(f"{title}: {len(dra)} sources, rms {fit['rmse'] * 1000:.1f} mas", fontsize=10)
    r = np.hypot(dra, ddec) * 1000.0
    hx.hist(dra * 1000.0, bins=30, histtype="step", label="dRA cos(Dec)")
    hx.hist(ddec * 1000.0, bins=30, histtype="step", label="dDec")
    hx.axvline(0.0, color="k", lw=0.5)
    hx.set_xlabel("residual, aligned minus reference (mas)")
    hx.set_ylabel("sources")
    hx.set_title(f"median |residual| {np.median(r):.1f} mas", fontsize=10)
    hx.legend(fontsize=8)
    fig.tight_layout()
    return figures.save(fig, path, dpi=110)


# --------------------------------------------------------------------------
# saved WCS (the _tweakreg.asdf files)


def save_wcs(model, path, filename=None):
    """Write a datamodel's gwcs and FITS WCS keywords (wcsinfo) to an ASDF file, atomically."""
    import asdf

    from ..fitsio import atomic_path

    tree = {"filename": filename or model.meta.filename, "wcs": model.meta.wcs,
            "wcsinfo": dict(model.meta.wcsinfo.instance)}
    with atomic_path(path) as tmp:
        asdf.AsdfFile(tree).write_to(tmp)
    return path


def load_wcs(path):
    """(gwcs, wcsinfo dict, recorded filename) of a saved ``_tweakreg.asdf``.

    Reads both these files and DR0.5's (written by gwcs 0.18 and asdf 2).
    """
    import asdf

    if not os.path.exists(path):
        raise CeersError(f"{path}: no such saved WCS")
    try:
        with asdf.open(path, lazy_load=False, memmap=False) as af:
            wcs, wcsinfo = af["wcs"], dict(af.tree.get("wcsinfo", {}))
            filename = af.tree.get("filename", "")
    except KeyError:
        raise CeersError(f"{path}: no 'wcs' in this ASDF file") from None
    except Exception as err:  # asdf raises many types for unreadable files
        raise CeersError(f"{path}: not a readable ASDF file ({type(err).__name__}: {err})") from None
    return wcs, wcsinfo, filename


def apply_wcs(model, wcs, wcsinfo):
    """Give a datamodel a saved WCS: the gwcs, its FITS keywords and footprint; mark tweakreg done."""
    from jwst.assign_wcs.util import update_s_region_imaging

    shape = model.data.shape
    box = wcs.bounding_box
    if box is not None:
        (x0, x1), (y0, y1) = (tuple(iv) for iv in box)
        if x1 - x0 > shape[1] + 1 or y1 - y0 > shape[0] + 1 or x1 - x0 < shape[1] - 1:
            raise CeersError(f"saved WCS covers {x1 - x0:.0f} x {y1 - y0:.0f} pixels, the image "
                             f"{shape[1]} x {shape[0]}")
    model.meta.wcs = wcs
    for key, value in wcsinfo.items():
        try:
            setattr(model.meta.wcsinfo, key, value)
        except Exception:  # a keyword the installed schema does not know: keep it in the tree
            model.meta.wcsinfo.instance[key] = value
    update_s_region_imaging(model)
    model.meta.cal_step.tweakreg = "COMPLETE"
    return model


# --------------------------------------------------------------------------
# one visit and filter, end to end


@dataclasses.dataclass(frozen=True)
class AstrometryOptions:
    """Command-line options of stage3/astrometry.py (the fit parameters come from --config)."""

    visit: str = option("", "visit to align, e.g. jw01345001001 (required)")
    filter: str = option("", "filter to align, e.g. F150W (required)")
    config: str = option("", "CEERS TweakReg config file of the filter, one section per visit "
                         "(required)")
    refcat: str = option("", "absolute reference catalog with RA, DEC (and a magnitude) "
                         "(required)")
    save_results: bool = option(False, "also write _tweakreg.asdf (the aligned WCS) per image and "
                                "a residual PNG per detector group")
    output_dir: str = option("", "where products go (default: the directory of the first image)")
    wcs_dir: str = option("", "where _tweakreg.asdf files go (default: --output_dir)")
    catalog_dir: str = option("", "keep the source catalogs here (default: not kept)")
    adjust_tolerance: bool = option(False, "lower a tolerance that TweakReg would refuse "
                                    "(separation <= sqrt(2) x tolerance) instead of stopping")

    def check(self):
        missing = [f"--{n}" for n in ("visit", "filter", "config", "refcat") if not getattr(self, n)]
        if missing:
            raise CeersError(f"missing required option(s) {', '.join(missing)}")


def check_inputs(paths, visit, filt):
    """Stop unless every path is a readable NIRCam image of ``visit`` and ``filt``, each once."""
    from ..fitsio import check_fits, require_nircam

    if not paths:
        raise CeersError(f"no images given for {visit} {filt}")
    seen = set()
    for path in paths:
        header = check_fits(path, ["SCI", "ERR", "DQ"])
        require_nircam(header, path)
        name = os.path.basename(path)
        if names.exposure_parts(name)["visit_id"] != visit:
            raise CeersError(f"{path}: not an image of visit {visit}")
        if str(header.get("FILTER", "")).upper() != filt.upper():
            raise CeersError(f"{path}: filter {header.get('FILTER')}, expected {filt.upper()}")
        if name in seen:
            raise CeersError(f"{path}: given twice")
        seen.add(name)


def align_visit(paths, params, refcat_path, catalog_dir):
    """Catalog every image, then align each detector's images (relative, then absolute).

    Returns (aligned models, result rows, {detector: absolute fit_info}).
    """
    from stdatamodels.jwst import datamodels

    from ..cli import progress
    from .sourcecat import bad_pixel_mask, find_sources

    models = [datamodels.ImageModel(p) for p in sorted(paths)]
    catalogs = []
    for model in progress(models, log, "Source catalogs made", every=1):
        cat = find_sources(model.data, model.err, bad_pixel_mask(model.dq), params.detection())
        cat.meta["name"] = _root(model)
        log.info("%s: %d sources", model.meta.filename, len(cat))
        catalogs.append(cat)
    by_detector = {}
    for model, cat in zip(models, catalogs):
        by_detector.setdefault(model.meta.instrument.detector, []).append((model, cat))
    aligned, rows, fits = [], [], {}
    for detector, pairs in sorted(by_detector.items()):
        scale = nircam.PIXEL_SCALE[nircam.channel(detector)]
        group, group_rows, fits[detector] = align_detector(
            [m for m, _ in pairs], [c for _, c in pairs], params, refcat_path, catalog_dir, scale)
        aligned += group
        rows += group_rows
    return aligned, rows, fits


def tweaked_name(model):
    """``<root>_tweakreg.fits`` of a cal file's model."""
    return names.product(_root(model), "tweakreg")


def save_products(models, fits, refcat, out_dir, wcs_dir, visit, filt, entry, save_results=True):
    """Write each aligned image (``_tweakreg.fits``, with the history entry ``entry``); with
    ``save_results`` also its saved WCS (``_tweakreg.asdf``) and each detector's residual
    plot (``<visit>_<filter>_<detector>_resid.png``)."""
    from .. import history
    from ..fitsio import save_model

    for model in models:
        name = tweaked_name(model)
        model.meta.filename = name
        history.record(model, "astrometry", entry)
        save_model(model, os.path.join(out_dir, name))
        if save_results:
            save_wcs(model, os.path.join(wcs_dir, name.replace(".fits", ".asdf")))
    if not save_results:
        return
    for detector, fit in fits.items():
        png = os.path.join(out_dir, f"{visit}_{filt.lower()}_{detector.lower()}_resid.png")
        plot_residuals(png, fit, refcat, f"{visit} {filt} {detector}")


@dataclasses.dataclass(frozen=True)
class UpdateWcsParams:
    """Command-line options of stage3/updatewcs.py."""

    image: str = option("", "the *_cal.fits file (required)")
    wcs_dir: str = option("", "directory of the saved <root>_tweakreg.asdf files "
                          "(default: the image's directory)")
    output_dir: str = option("", "where <root>_tweakreg.fits goes (default: the image's "
                             "directory)")
