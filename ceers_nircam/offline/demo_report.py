"""The demo's validation report: every product of the reduction measured against the truth.

Reads what the demo's batch run left in its folder (``uncals/<detector>/``
with the simulator's truth and noiseless rates, ``calibrated/``,
``catalogs/``, ``mosaics/``) and writes ``report/report.html``,
``report/summary.json`` and the figures in ``report/figures/``. Each check
carries the threshold of the acceptance test of its step, so the report
passes only if the whole reduction does what the stage tests demand of each
step on its own. The measurements are those of the tests
(:mod:`ceers_nircam.qa`, :mod:`ceers_nircam.offline.validate`).

The truth of a mosaic is the noiseless scene of its exposures drizzled the
same way: a copy of each ``_match`` file with the scene as SCI goes through
the same mosaic step on the same grid (``validation/``).
"""

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from stdatamodels.jwst import datamodels

from .. import apertures, figures, history, qa, reffiles
from ..cli import CeersError, get_logger
from ..fitsio import atomic_path
from ..nircam import filter_channel
from ..report import Check, Section, write_report
from ..steps import associations, mosaic, mosaic_background
from . import artifacts, validate
from .simulate import ideal_path, read_truth

log = get_logger("demo.report")

REPORT_DIR = "report"
POINTING = "nircam1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Windowed-centroid sigma and photometry aperture radius in mosaic pixels (0.03"), per channel.
CENTROID_SIGMA = {"SHORT": 1.0, "LONG": 1.6}
APERTURE = {"SHORT": 7, "LONG": 10}


@dataclasses.dataclass
class Exposure:
    """One simulated exposure of the demo and where its truth and products are."""

    root: str
    filter: str
    detector: str
    truth_dir: str
    products: str

    def path(self, suffix, ext=".fits"):
        return os.path.join(self.products, f"{self.root}_{suffix}{ext}")

    @property
    def truth(self):
        return read_truth(os.path.join(self.truth_dir, f"{self.root}_truth.fits"))

    @property
    def ideal(self):
        return fits.getdata(ideal_path(self.truth_dir, self.root)).astype(np.float64)

    @property
    def channel(self):
        return filter_channel(self.filter)

    def detector1_rate(self):
        """The rate file as Detector1 wrote it (before the wisp and 1/f steps)."""
        for suffix in ("rate_prewisp", "rate_pre1f", "rate"):
            if os.path.exists(self.path(suffix)):
                return self.path(suffix)
        raise FileNotFoundError(self.path("rate"))


def exposures(outdir):
    """Every simulated exposure of the demo, in name order."""
    found = []
    for truth in sorted(glob.glob(os.path.join(outdir, "uncals", "*", "*_truth.fits"))):
        h = fits.getheader(truth)
        found.append(Exposure(h["ROOTNAME"], h["FILTER"], h["DETECTOR"], os.path.dirname(truth),
                              os.path.join(outdir, "calibrated")))
    return found


def _worst(values, largest=True):
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return float("nan")
    return float(max(values) if largest else min(values))


class Figures:
    """Where the report's figures go, and copies of the step's own QA figures."""

    def __init__(self, report_dir):
        self.report_dir = report_dir
        self.dir = os.path.join(report_dir, "figures")
        os.makedirs(self.dir, exist_ok=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def rel(self, path):
        return os.path.relpath(path, self.report_dir)

    def copy(self, source):
        """Copy a step's PNG beside the report; its path relative to the report."""
        target = self.path(os.path.basename(source))
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        return self.rel(target)


# --------------------------------------------------------------------------
# stage 1


def measure_snowballs(e):
    """Snowball numbers of one exposure: count, lowest onset coverage, false flags, agreement."""
    truth = e.truth
    with fits.open(e.path("snowmask")) as hdul:
        snowmask, groups = hdul["SNOWMASK"].data, hdul["FLAGGRP"].data
    ideal = e.ideal
    cover = qa.onset_coverage(groups, truth["snowballs"], int(truth["header"]["NGROUPS"]),
                              ideal, truth["header"])
    away = qa.away_from_events(truth, snowmask.shape)
    agreement, _ = qa.rate_agreement(e.detector1_rate(), truth, ideal)
    return {"n": len(truth["snowballs"]), "cover": _worst(cover, largest=False),
            "false": float(np.mean(snowmask[away] >= 0)), "agreement": agreement}


def snowball_section(exps, found, figs):
    rows = [(e.root, found[e.root]["snowballs"]) for e in exps]
    checks = [
        Check("snowballs injected (all exposures)", float(sum(r["n"] for _, r in rows)), low=1),
        Check("lowest share of a snowball core and halo flagged from its onset",
              _worst([r["cover"] for _, r in rows], largest=False), low=0.99),
        Check("pixels away from snowballs and cosmic rays newly flagged (worst exposure)",
              _worst([r["false"] for _, r in rows]), high=0.005),
        Check("median |rate - truth| / ERR in snowball footprints (worst exposure)",
              _worst([r["agreement"] for _, r in rows]), high=1.5)]
    for root, r in rows:
        checks.append(Check(f"{root}: {r['n']} snowballs, lowest coverage", r["cover"], low=0.99,
                            note=f"false flags {r['false']:.3%}, rate agreement "
                                 f"{r['agreement']:.2f}"))
    return Section("Snowballs (stage 1: Detector1 with the CEERS expansion)",
                   "Coverage: share of each injected snowball's core and halo flagged as a jump or "
                   "saturated in its onset group or the next; the halo ends where its charge "
                   "sinks below what the jump step can see through the sky's and the sources' "
                   "photon noise (on a bright galaxy, nearer the core). False flags: pixels "
                   "outside every "
                   "snowball and cosmic-ray footprint that the expansion added. Agreement: the "
                   "Detector1 rate against the noiseless truth in the snowball footprints.",
                   checks, [snowball_figure(exps, figs)])


def snowball_figure(exps, figs):
    """Cutouts of the largest snowballs of the first exposure: the rate and the flags added."""
    e = exps[0]
    truth = e.truth
    events = truth["snowballs"]
    order = np.argsort(-np.asarray(events["halo_radius"], float))[:4]
    with fits.open(e.detector1_rate()) as rate, fits.open(e.path("snowmask")) as mask:
        data, dq, added = rate["SCI"].data, rate["DQ"].data, mask["SNOWMASK"].data
    plt = figures.pyplot()
    fig, axes = plt.subplots(2, len(order), figsize=(3.2 * len(order), 6.4), squeeze=False)
    for k, i in enumerate(order):
        x, y = int(events["x"][i]), int(events["y"][i])
        half = int(max(20, 1.5 * events["halo_radius"][i]))
        cut = np.s_[max(y - half, 0):y + half + 1, max(x - half, 0):x + half + 1]
        figures.show(axes[0, k], data[cut], f"rate; halo radius {events['halo_radius'][i]:.0f} px",
                     stretch="asinh")
        figures.show(axes[1, k], data[cut], "jump flags (blue), expansion (red)", stretch="asinh")
        figures.overlay(axes[1, k], (dq[cut] & 4) != 0, color=(0.1, 0.3, 1.0), alpha=0.35)
        figures.overlay(axes[1, k], added[cut] >= 0, alpha=0.45)
    fig.suptitle(f"{e.root}: the largest snowballs and their flags", fontsize=10)
    fig.tight_layout()
    path = figures.save(fig, figs.path("snowballs.png"))
    return figs.rel(path), "Largest snowballs of one exposure: the rate and the flags added"


def measure_wisp(e):
    """Fitted against injected wisp scale, and the injected wisp left after subtraction."""
    truth = e.truth
    if not truth["header"]["WISPSCL"]:
        return None
    entry = history.entries(e.path("rate"), "wispsub")[0]
    fitted = float(entry.split("scale=")[1].split(",")[0])
    with fits.open(e.path("rate_prewisp")) as before, fits.open(e.path("rate_pre1f")) as after:
        subtracted = before["SCI"].data.astype(np.float64) - after["SCI"].data
        on = (truth["wisp"] != 0) & (after["SCI"].data != 0) & np.isfinite(subtracted)
    injected = truth["wisp"]
    rms_in = np.sqrt(np.mean(injected[on] ** 2))
    rms_left = np.sqrt(np.mean((injected - subtracted)[on] ** 2))
    return {"fitted": fitted, "injected": float(truth["header"]["WISPSCL"]),
            "left": float(rms_left / rms_in)}


def wisp_section(exps, found, figs):
    checks, figure_list = [], []
    with_wisps = [e for e in exps if found[e.root]["wisp"] is not None]
    for e in with_wisps:
        r = found[e.root]["wisp"]
        checks.append(Check(f"{e.root}: fitted scale minus injected", r["fitted"] - r["injected"],
                            low=-0.05, high=0.05, note=f"injected {r['injected']:.3f}, "
                                                        f"fitted {r['fitted']:.3f}"))
        checks.append(Check(f"{e.root}: wisp RMS left / injected", r["left"], high=0.4))
    if with_wisps:
        e = with_wisps[0]
        figure_list.append((figs.copy(e.path("rate_wisp", ".png")),
                            f"{e.root}: the wisp fit curve (wispsub.py --plot)"))
        figure_list.append(wisp_figure(e, figs))
    return Section("Wisps (stage 1: wisp template fit)",
                   "Fitted template scale against the injected one, and the injected wisp (its "
                   "distortion from the template included) left after subtraction.",
                   checks, figure_list)


def wisp_figure(e, figs):
    from ..masking import block_reduce

    with fits.open(e.path("rate_prewisp")) as before, fits.open(e.path("rate_pre1f")) as after:
        images = [block_reduce(before["SCI"].data, 4, np.median),
                  block_reduce(after["SCI"].data, 4, np.median)]
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6))
    vmin, vmax = figures.limits(images[0], 5, 97)
    for ax, image, label in zip(axes, images, ("before", "after")):
        figures.show(ax, image, f"{label} wisp subtraction (4x4 median)", vmin=vmin, vmax=vmax)
    fig.suptitle(e.root, fontsize=10)
    fig.tight_layout()
    path = figures.save(fig, figs.path(f"{e.root}_wisp_before_after.png"))
    return figs.rel(path), f"{e.root}: before and after the wisp subtraction"


def measure_striping(e):
    """Residual 1/f row and column patterns over their noise floor."""
    truth = e.truth
    stem = e.path("rate")[: -len(".fits")]
    masked = fits.getdata(stem + "_1fmask.fits", "MASK") != 0
    rows = fits.getdata(stem + "_horiz.fits", "ROWS")
    cols = fits.getdata(stem + "_vert.fits", "COLS")
    with fits.open(e.path("rate_pre1f")) as pre:
        data, dq = pre["SCI"].data, pre["DQ"].data
    with datamodels.ImageModel(e.path("rate_pre1f")) as model:
        flat, _ = reffiles.flat_field(model)
    stripes = artifacts.striping_image(truth["stripe_rows"], truth["stripe_cols"])
    # What the image holds besides sources and striping: the sky, and the part of the
    # wisp its subtraction left (template mismatch); their row and column patterns are
    # what any row method takes with the striping.
    smooth = validate.true_sky(truth) / truth["header"]["PHOTMJSR"]
    subtracted = 0.0
    if os.path.exists(e.path("rate_prewisp")):
        subtracted = np.nan_to_num(fits.getdata(e.path("rate_prewisp"), "SCI").astype(np.float64)
                                   - data)
        with np.errstate(invalid="ignore", divide="ignore"):
            smooth = smooth + np.nan_to_num((truth["wisp"] - subtracted) / flat)
    background = (dq == 0) & ~validate.source_footprint(data.shape, truth["sources"])
    _, _, sigma = qa.carried_striping(data, dq, flat, e.ideal - stripes - subtracted, background)
    smooth_rows, smooth_cols = qa.sky_patterns(smooth, masked)
    res = qa.striping_residual(rows, cols, masked, truth["stripe_rows"] + smooth_rows,
                               truth["stripe_cols"] + smooth_cols, sigma)
    return {"rows": res.rows_ratio, "cols": res.cols_ratio}


def striping_section(exps, found, figs):
    checks, shown = [], {}
    for e in exps:
        r = found[e.root]["striping"]
        checks.append(Check(f"{e.root}: row residual / noise floor", r["rows"], high=1.5))
        checks.append(Check(f"{e.root}: column residual / noise floor", r["cols"], high=1.5))
        shown.setdefault(e.channel, e)
    figure_list = [(figs.copy(e.path("rate_1f", ".png")),
                    f"{e.root}: the 1/f patterns and the image before and after (remstriping.py --plot)")
                   for e in shown.values()]
    return Section("1/f striping (stage 1)",
                   "Recovered row (per amplifier) and column patterns minus the injected ones plus "
                   "what any row method takes from the sky's own slope and from the wisp left by "
                   "its subtraction, over amplifier-rows and columns with at least 20% unmasked "
                   "pixels, against the noise floor of a median over those pixels "
                   "(1.25 sigma / sqrt(N)).", checks, figure_list)


# --------------------------------------------------------------------------
# stage 2 and 3


LIMIT_MAS = {"SHORT": 5.0, "LONG": 8.0}


def measure_astrometry(e, outdir):
    """Median offset of the matched truth sources before and after alignment, and where the
    aligned WCS puts them (for the comparison between dithers)."""
    catalog = Table.read(os.path.join(outdir, "catalogs", f"{e.root}_cal_cat.ecsv"))
    src = validate.matched_sources(validate.detectable(e.truth), catalog)
    out = {"n": len(src)}
    for when, suffix in (("before", "cal"), ("after", "tweakreg")):
        with datamodels.ImageModel(e.path(suffix)) as model:
            dra, ddec = validate.wcs_offsets(model.meta.wcs, src)
            out[when] = float(np.median(np.hypot(dra, ddec))) * 1000.0
            if when == "after":
                ra, dec = model.meta.wcs(np.asarray(src["x"]), np.asarray(src["y"]))
                out["positions"] = {int(i): (float(r), float(d))
                                    for i, r, d in zip(src["id"], ra, dec)}
    return out


def astrometry_section(exps, found, figs):
    checks, positions = [], {}
    for e in exps:
        r = found[e.root]["astrometry"]
        checks.append(Check(f"{e.root}: median offset of {r['n']} matched truth sources",
                            r["after"], high=LIMIT_MAS[e.channel], unit="mas",
                            note=f"before alignment {r['before']:.1f} mas"))
        positions.setdefault((e.detector, e.filter), {})[e.root] = {
            int(k): tuple(v) for k, v in r["positions"].items()}
    for (det, filt), dithers in sorted(positions.items()):
        checks.append(Check(f"{det} {filt}: relative RMS between dithers",
                            validate.pairwise_rms_mas(dithers), high=3.0, unit="mas"))
    pngs = sorted(glob.glob(os.path.join(exps[0].products, "*_resid.png")))
    return Section("Astrometry (stage 3: TweakReg to the reference catalog)",
                   "Where each image's WCS puts the true pixel positions of the truth sources its "
                   "alignment catalog found, against their true sky positions, before (cal) and "
                   "after (tweakreg) alignment; and the same sources between dithers.",
                   checks, [(figs.copy(p), f"Residual vectors: {os.path.basename(p)}") for p in pngs])


def measure_sky(e):
    """Pedestal against the injected sky; rescaled VAR_RNOISE against the true background
    variance; zero variances left."""
    truth = e.truth
    entry = history.entries(e.path("a3001_match"), "skywcsvar")[0]
    values = dict(kv.split("=", 1) for kv in entry.rstrip(".").split(": ", 1)[1].split(", "))
    with datamodels.ImageModel(e.path("a3001_crf")) as crf:
        true_var = validate.background_variance(crf.data, crf.dq,
                                                validate.scene_cal(truth, e.ideal, crf),
                                                truth["sources"])
        bits = fits.getdata(e.path("a3001_bkgsub1"), "BKGMASK")
        quiet = (bits == 0) & (crf.dq == 0) & np.isfinite(crf.var_rnoise)
        mean_rn = float(np.mean(crf.var_rnoise[quiet]))
    with datamodels.ImageModel(e.path("a3001_match")) as match:
        level = float(match.meta.background.level)
        rescaled = float(np.mean(match.var_rnoise[quiet]))
        zeros = sum(int(np.sum(getattr(match, v) == 0)) for v in ("var_rnoise", "var_poisson", "var_flat"))
    return {"sky": float(truth["header"]["SKYMJYSR"]), "level": level,
            "factor": float(values["rnoise_factor"]), "blocks": float(values["dr05_blocks_factor"]),
            "ratio": rescaled / true_var, "dr05_ratio": float(values["dr05_blocks_factor"]) * mean_rn / true_var,
            "zeros": zeros}


def sky_sections(exps, found, figs):
    pedestal, variance = [], []
    for e in exps:
        r = found[e.root]["sky"]
        tol = max(0.003 * r["sky"], 1e-3)
        pedestal.append(Check(f"{e.root}: pedestal minus injected sky", r["level"] - r["sky"],
                              low=-tol, high=tol, unit="MJy/sr", note=f"injected {r['sky']:.4f}"))
        variance.append(Check(f"{e.root}: rescaled VAR_RNOISE / true background variance",
                              r["ratio"], low=0.97, high=1.03,
                              note=f"factor {r['factor']:.3f}; DR0.5's 7x7 blocks give "
                                   f"{r['blocks']:.3f}, ratio {r['dr05_ratio']:.3f}"))
    variance.append(Check("zero variances left in the _match files",
                          float(sum(found[e.root]["sky"]["zeros"] for e in exps)), high=0))
    e = exps[0]
    figure = [(figs.copy(e.path("a3001_skyvar", ".png")),
               f"{e.root}: pedestal histogram fit, background model and mask (skywcsvar.py --plot)")]
    return [Section("Sky pedestal (stage 3: skywcsvar)",
                    "The pedestal removed from each exposure against the mean sky injected (each "
                    "detector and dither its own level, with a sky surface of a few per cent); "
                    "tolerance 0.3% or 1e-3 MJy/sr.", pedestal, figure),
            Section("Read-noise variance (stage 3: skywcsvar)",
                    "Mean rescaled VAR_RNOISE over source-free background against the true "
                    "per-pixel background variance (read noise with its 1/f excess plus the sky's "
                    "Poisson noise), measured on the image less its noiseless scene.", variance)]


def measure_exposure(e, outdir):
    """Every per-exposure measurement (one worker's job)."""
    return e.root, {"snowballs": measure_snowballs(e), "wisp": measure_wisp(e),
                    "striping": measure_striping(e), "astrometry": measure_astrometry(e, outdir),
                    "sky": measure_sky(e)}


# --------------------------------------------------------------------------
# mosaics


def scene_mosaic(outdir, exps, filt):
    """The noiseless scene drizzled like a filter's mosaic (made once, then reused)."""
    work = os.path.join(outdir, "validation")
    target = os.path.join(work, "mosaics", f"ceers_{POINTING}_{filt.lower()}_scene_i2d.fits")
    i2d = os.path.join(outdir, "mosaics", f"ceers_{POINTING}_{filt.lower()}_i2d.fits")
    if os.path.exists(target) and os.path.getmtime(target) >= os.path.getmtime(i2d):
        return target
    grid_path = os.path.join(work, f"grid_{filt.lower()}.json")
    mosaic.grid_of_header(fits.getheader(i2d, "SCI")).write(grid_path)
    product, members = associations.members(
        os.path.join(outdir, f"{POINTING}_{filt.lower()}_final.json"))
    by_root = {e.root: e for e in exps}
    roots = []
    for path in members:
        root = os.path.basename(path).split("_a3001_")[0]
        e = by_root[root]
        validate.write_scene_copy(os.path.join(outdir, path), e.truth, e.ideal,
                                  os.path.join(work, "calibrated", f"{root}_a3001_scene.fits"))
        roots.append(root)
    asn = associations.make_association(roots, f"{product}_scene", "calibrated", "a3001_scene")
    asn_path = os.path.join(work, f"{POINTING}_{filt.lower()}_scene.json")
    with atomic_path(asn_path) as tmp, open(tmp, "w") as fh:
        fh.write(associations.association_json(asn))
    log.info("Drizzling the noiseless scene of %s onto the mosaic's grid", filt)
    done = subprocess.run([sys.executable, os.path.join(ROOT, "stage3", "make_mosaic.py"),
                           asn_path, "--grid", grid_path, "--output_dir",
                           os.path.join(work, "mosaics"), "--overwrite"],
                          cwd=work, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise CeersError(f"drizzling the noiseless scene of {filt} failed: {last}")
    for root in roots:  # the copies were only the drizzle's input
        os.remove(os.path.join(work, "calibrated", f"{root}_a3001_scene.fits"))
    return target


def _aperture_sums(image, x, y, radius):
    from photutils.aperture import CircularAperture, aperture_photometry

    table = aperture_photometry(image, CircularAperture(np.column_stack([x, y]), radius))
    return np.asarray(table["aperture_sum"], float)


def measure_mosaic(outdir, exps, filt):
    """Every measurement of one filter's mosaic against its truth (one worker's job)."""
    f, channel = filt.lower(), filter_channel(filt)
    catalog = Table.read(glob.glob(os.path.join(outdir, "uncals", "*", "truth_catalog.ecsv"))[0])
    scene = fits.getdata(scene_mosaic(outdir, exps, filt), "SCI")
    base = os.path.join(outdir, "mosaics", f"ceers_{POINTING}_{f}")
    with fits.open(base + "_i2d.fits") as i2d:
        image, err = i2d["SCI"].data.astype(np.float32), i2d["ERR"].data
        header = i2d["SCI"].header
    grid = mosaic.grid_of_header(header)
    wcs = WCS(header)
    with fits.open(base + "_mbkgsub1.fits") as final:
        sub, bkgmask = final["SCI"].data.astype(np.float32), final["BKGMASK"].data
        curve = Table(final["APERNOISE"].data)
    out = {"filter": filt, "grid": dataclasses.asdict(grid)}

    # positions and photometry of isolated compact truth sources
    chosen, x, y = validate.isolated_in_mosaic(catalog, filt, wcs, sub.shape)
    offsets, keep = [], []
    for i in chosen:
        cx, cy = validate.windowed_centroid(sub, x[i], y[i], CENTROID_SIGMA[channel])
        if np.isfinite(cx):
            offsets.append((cx - x[i], cy - y[i]))
            keep.append(i)
    offsets = np.array(offsets).reshape(-1, 2) * grid.pixel_scale * 1000.0
    out["offsets_n"] = len(offsets)
    out["offset_median"] = (np.median(offsets, axis=0).tolist() if len(offsets)
                            else [float("nan")] * 2)
    keep = np.array(keep, dtype=int)
    radius = APERTURE[channel]
    measured = _aperture_sums(np.nan_to_num(sub), x[keep], y[keep], radius)
    expected = _aperture_sums(np.nan_to_num(scene), x[keep], y[keep], radius)
    good = expected > 0
    out["aperture"] = radius
    out["phot_mag"] = np.asarray(catalog[f"mag_{f}"])[keep][good].tolist()
    out["phot_ratio"] = (measured[good] / expected[good]).tolist()

    # noise and error map
    out["empty"] = {r: (validate.empty_aperture_noise(sub, err, scene, r), apertures.ratio_at(curve, r))
                    for r in (3, 6)}
    finite, nodata = validate.err_at_bad_pixels(
        err, image, wcs, [(e.path("a3001_match"), e.truth["badpix"]) for e in exps if e.filter == filt])
    out["holes_n"], out["holes_nodata"] = int(finite.size), nodata
    out["holes"] = ([float(np.min(finite)), float(np.percentile(finite, 1)), float(np.median(finite)),
                     float(np.percentile(finite, 99))] if finite.size else [float("nan")] * 4)

    # mosaic background
    rms = validate.mosaic_sky_rms(image, scene)
    covered = np.isfinite(sub)
    masked = mosaic_background.source_pixels(bkgmask)
    light = covered & (scene > 0.5 * rms)
    out["bias"] = float(np.mean((sub - scene)[masked & covered])) / rms
    out["coverage"] = float(masked[light].mean())
    return out


def mosaic_section(outdir, results, filters, figs):
    checks = []
    grids = [mosaic.Grid(**{k: tuple(v) if isinstance(v, list) else v for k, v in r["grid"].items()})
             for r in results]
    distinct = sum(1 for i, g in enumerate(grids) if not any(mosaic.same_grid(g, h) for h in grids[:i]))
    checks.append(Check("distinct pixel grids among the filter mosaics", float(distinct), low=1,
                        high=1))
    for r in results:
        filt = r["filter"]
        median = r["offset_median"]
        ratio = np.asarray(r["phot_ratio"])
        checks.append(Check(f"{filt}: isolated truth sources measured", float(r["offsets_n"]), low=20))
        checks.append(Check(f"{filt}: median position offset", float(np.hypot(*median)), high=5.0,
                            unit="mas", note=f"({median[0]:+.2f}, {median[1]:+.2f}) mas"))
        checks.append(Check(f"{filt}: median aperture flux / truth (r = {r['aperture']} px)",
                            float(np.median(ratio)) if ratio.size else float("nan"), low=0.98,
                            high=1.02, note=f"{ratio.size} sources, robust scatter "
                                            f"{qa.robust_sigma(ratio):.3f}" if ratio.size else ""))
        for radius, (empty, factor) in r["empty"].items():
            checks.append(Check(f"{filt}: empty-aperture noise / (ERR x APERNOISE ratio) "
                                f"(r = {radius} px)", empty.ratio / factor, low=0.9, high=1.1,
                                note=f"{empty.count} apertures; over ERR alone {empty.ratio:.3f}, "
                                     f"the step's ratio {factor:.3f}"))
        low, p1, median, p99 = r["holes"]
        note = (f"{r['holes_n']} bad pixels; median {median:.3f}, 1-99%: {p1:.3f}-{p99:.3f} "
                "(higher where a bad pixel takes one of a few exposures away); "
                f"{r['holes_nodata']} with no data at all")
        checks.append(Check(f"{filt}: lowest ERR at a bad pixel / neighbours (a hole gives ~0)", low,
                            low=0.5, note=note))
        checks.append(Check(f"{filt}: 1st percentile of ERR at a bad pixel / neighbours", p1,
                            low=0.8))
        checks.append(Check(f"{filt}: background-subtracted minus truth under the source mask",
                            r["bias"], low=-0.1, high=0.1, unit="sky RMS"))
        checks.append(Check(f"{filt}: source light (> 0.5 sky RMS) covered by the source mask",
                            r["coverage"], low=0.95))
    figure_list = [(figs.copy(p), f"{os.path.basename(p)[:-9]}: mosaic with its source mask")
                   for p in sorted(glob.glob(os.path.join(outdir, "mosaics", "*_mask.png")))]
    figure_list.append(photometry_figure(
        [(r["filter"], r["phot_mag"], r["phot_ratio"]) for r in results], figs))
    figure_list.append(colour_figure(outdir, filters, figs))
    return Section("Mosaics (stage 3: drizzle on the fixed grid, mosaic background)",
                   "Truth: the noiseless scene of the same exposures drizzled onto the same grid. "
                   "Positions: windowed centroids of isolated compact truth sources brighter than "
                   "25 mag in the background-subtracted mosaic, against their true sky positions. "
                   "Photometry: the same aperture on the mosaic and on its truth. Noise: apertures "
                   "on sky the truth says is empty against the ERR map times the ratio the mosaic "
                   "background step measured for the pixels' correlated noise (APERNOISE); "
                   "ERR at injected bad pixels against their "
                   "neighbours (a hole in the variance would make it far lower). Background: the final background-subtracted mosaic against the "
                   "truth under the source mask (the merged tiers, grown where the fitted source halos are "
                   "bright), and that mask against the source light.",
                   checks, figure_list)


def photometry_figure(rows, figs):
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for filt, mags, ratio in rows:
        ax.plot(mags, ratio, "o", ms=3, label=f"{filt} (median {np.median(ratio):.3f})")
    ax.axhline(1.0, color="k", lw=0.6)
    ax.axhspan(0.98, 1.02, color="0.85", zorder=0)
    ax.set_xlabel("truth magnitude (AB)")
    ax.set_ylabel("aperture flux: mosaic / truth")
    ax.set_ylim(0.8, 1.2)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = figures.save(fig, figs.path("mosaic_photometry.png"))
    return figs.rel(path), "Aperture photometry of isolated truth sources in the final mosaics"


def colour_figure(outdir, filters, figs, max_size=1600):
    """A colour image of the pointing: longest filter red, shortest blue."""
    from astropy.visualization import make_lupton_rgb

    from ..masking import block_reduce

    ordered = sorted(filters, key=lambda f: int(f[1:4]))
    planes = []
    for filt in ordered:
        data = fits.getdata(os.path.join(outdir, "mosaics",
                                         f"ceers_{POINTING}_{filt.lower()}_mbkgsub1.fits"), "SCI")
        step = max(1, int(np.ceil(max(data.shape) / max_size)))
        planes.append(np.nan_to_num(block_reduce(data, step, np.mean) if step > 1 else data))
    if len(planes) == 2:
        blue, red = planes
        green = 0.5 * (blue + red)
    else:
        blue, green, red = planes[0], np.mean(planes[1:-1], axis=0), planes[-1]
    noise = qa.robust_sigma(green[green != 0])
    rgb = make_lupton_rgb(red, green, blue, minimum=-noise, stretch=40 * noise, Q=8)
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(10, 10 * rgb.shape[0] / rgb.shape[1]))
    ax.imshow(rgb, origin="lower")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(" / ".join(ordered[::-1]) + " as red / green / blue", fontsize=10)
    fig.tight_layout()
    path = figures.save(fig, figs.path("colour.png"), dpi=110)
    return figs.rel(path), "Colour image of the pointing from the background-subtracted mosaics"


# --------------------------------------------------------------------------
# the report


def _signature(outdir):
    """Names, sizes and times of every product the report reads: unchanged products give
    the same report, so a rerun reuses it."""
    digest = hashlib.sha256()
    for folder in ("uncals", "calibrated", "catalogs", "mosaics"):
        for path in sorted(glob.glob(os.path.join(outdir, folder, "**", "*"), recursive=True)):
            if path.endswith((".fits", ".ecsv", ".png", ".json")):
                st = os.stat(path)
                digest.update(f"{os.path.relpath(path, outdir)} {st.st_size} {st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _sections_from(data):
    return [Section(s["title"], s.get("text", ""),
                    [Check(c["name"], c["value"], c["low"], c["high"], c["unit"], c["note"])
                     for c in s["checks"]],
                    [(f["path"], f["caption"]) for f in s["figures"]]) for s in data]


def measure(outdir, exps, filters, workers=2):
    """Every exposure's and every mosaic's measurements, ``workers`` at a time."""
    import concurrent.futures as cf

    found, mosaics = {}, {}
    with cf.ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = {pool.submit(measure_mosaic, outdir, exps, f): f for f in filters}
        jobs.update({pool.submit(measure_exposure, e, outdir): e.root for e in exps})
        for done, job in enumerate(cf.as_completed(jobs), 1):
            result = job.result()
            if isinstance(result, dict):
                mosaics[result["filter"]] = result
            else:
                found[result[0]] = result[1]
            log.info("Validation measurements %d/%d (%s)", done, len(jobs), jobs[job])
    return found, [mosaics[f] for f in filters]


def write(outdir, layout, workers=2):
    """Measure the demo's products against the truth (``workers`` processes); write the
    report. Returns the paths of report.html and summary.json."""
    report_dir = os.path.join(outdir, REPORT_DIR)
    cache = os.path.join(report_dir, "measurements.json")
    key = _signature(outdir)
    if os.path.exists(cache):
        with open(cache) as fh:
            saved = json.load(fh)
        if saved.get("key") == key and all(
                os.path.exists(os.path.join(report_dir, f["path"]))
                for s in saved["sections"] for f in s["figures"]):
            log.info("Products unchanged since the last report: reusing its measurements")
            return write_report(report_dir, saved["title"], _sections_from(saved["sections"]),
                                saved["intro"])
    exps = exposures(outdir)
    figs = Figures(report_dir)
    found, mosaics = measure(outdir, exps, layout["filters"], workers)
    sections = [snowball_section(exps, found, figs), wisp_section(exps, found, figs),
                striping_section(exps, found, figs), astrometry_section(exps, found, figs),
                *sky_sections(exps, found, figs), mosaic_section(outdir, mosaics, layout["filters"], figs)]
    title = "ceers-nircam demo: the reduction of a simulated CEERS pointing against its truth"
    intro = (f"{len(exps)} exposures: {', '.join(layout['detectors'])} in "
             f"{', '.join(layout['filters'])}, three dithers, simulated on the realistic defaults "
             "and reduced through the batch files of every stage.")
    paths = write_report(report_dir, title, sections, intro)
    with open(paths[1]) as fh:
        summary = json.load(fh)
    with atomic_path(cache) as tmp, open(tmp, "w") as fh:
        json.dump({"key": key, "title": title, "intro": intro,
                   "sections": [{**s, "text": sec.text} for s, sec in zip(summary["sections"], sections)]},
                  fh, indent=1)
    return paths
