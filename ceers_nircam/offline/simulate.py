"""Simulate CEERS-like NIRCam ``*_uncal.fits`` exposures with recorded truth.

The simulator writes level-1b ramps that the unmodified jwst pipeline
calibrates with the synthetic CRDS context: it reads the very reference files
CRDS selects for each exposure (superbias, dark, linearity, gain, read noise,
flat, photom, area, distortion) and applies them in reverse, so that
calibration inverts the simulation. Sources are placed with the pipeline's
own WCS (``assign_wcs`` on the true attitude); a pointing error changes only
the attitude written to the header.

Everything injected is written to a ``*_truth.fits`` file beside each
exposure, and the scene to ``truth_catalog.ecsv``.

Command line: ``ceers-simulate OUTDIR [options]`` (``--help`` lists them).
"""

import dataclasses
import hashlib
import json
import os
import sys
from glob import glob

import crds
import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from stdatamodels.jwst import datamodels

from .. import survey
from ..cli import CeersError, get_logger, make_parser, progress, quiet_loggers, run, setup_logging
from ..fitsio import save_model, write_hdulist
from . import artifacts, scene
from ..nircam import READOUT_AXES
from . import instrument as inst

log = get_logger("offline.simulate")

EPOCH1_START = "2022-06-21T12:00:00"
# Three-point dither offsets (V2, V3 arcsec), a few arcsec with sub-pixel phases.
DITHERS = ((0.0, 0.0), (1.543, 2.917), (3.106, -0.391), (-1.478, 3.203))
REFTYPES = ("superbias", "dark", "linearity", "gain", "readnoise", "flat", "photom", "area",
            "distortion", "mask")


def _template_path():
    import jwst

    pattern = os.path.join(os.path.dirname(jwst.__file__), "associations", "tests", "data",
                           "exposures", "*_nrca3_uncal.fits")
    found = sorted(glob(pattern))
    if not found:
        raise CeersError("the jwst package lacks its header-only NIRCam uncal example")
    return found[0]


@dataclasses.dataclass
class SimulationConfig:
    """What to simulate. Defaults give one CEERS pointing-1-like visit."""

    detectors: tuple = ("NRCA1", "NRCA3", "NRCALONG")
    filters: tuple = ("F150W", "F277W")
    ngroups: int = 9
    ndithers: int = 3
    subarray: str = "FULL"  # or SUB640, SUB320, SUB160 (one output, fast tests)
    observation: int = 1
    visit: int = 1
    pointing: str = "nircam1"  # a DR0.5 mosaic grid whose centre is the field centre
    ra: float = None
    dec: float = None
    pa_v3: float = survey.EPOCH1_PA_V3
    pointing_error: tuple = (0.0, 0.0)  # (dRA cos(dec), dDec) arcsec, header minus truth
    dither_error: float = 0.0  # rms (arcsec) of a further error per exposure, per axis
    seed: int = 1345
    catalog: object = None  # Table, or a path to an ECSV; None generates one
    density: float = 250.0  # sources per arcmin^2 for a generated scene
    sky: bool = True
    sources: bool = True
    noise: bool = True
    striping: bool = True
    wisps: bool = True
    wisp_scale: float = None  # None draws one per exposure
    snowballs: int = 4
    cosmic_rays: float = inst.COSMIC_RAY_RATE  # events per cm^2 per s
    bad_pixels: bool = True
    bias_drifts: bool = True
    sky_gradient: float = 0.0  # peak-to-centre amplitude of a planar sky gradient, fraction of the sky
    readnoise_excess: float = 1.0  # true read noise over the reference file's (CEERS saw > 1)
    date: str = EPOCH1_START

    def __post_init__(self):
        self.detectors = tuple(d.upper() for d in self.detectors)
        self.filters = tuple(f.upper() for f in self.filters)
        for d in self.detectors:
            try:
                inst.channel(d)
            except ValueError as err:
                raise CeersError(str(err)) from None
        for f in self.filters:
            try:
                inst.filter_channel(f)
            except ValueError as err:
                raise CeersError(str(err)) from None
        self.subarray = self.subarray.upper()
        try:
            inst.subarray(self.subarray)
        except ValueError as err:
            raise CeersError(str(err)) from None
        if not 2 <= self.ngroups <= inst.MAX_GROUPS:
            raise CeersError(f"ngroups must be between 2 and {inst.MAX_GROUPS}, not {self.ngroups}")
        if not 1 <= self.ndithers <= len(DITHERS):
            raise CeersError(f"ndithers must be between 1 and {len(DITHERS)}")
        if self.ra is None or self.dec is None:
            try:
                self.ra, self.dec = survey.pointing_centre(self.pointing)
            except KeyError as err:
                raise CeersError(str(err.args[0])) from None


@dataclasses.dataclass
class Exposure:
    """One detector of one exposure: its names and its place in the visit."""

    detector: str
    filter: str
    visit_group: int
    exposure: int
    dither: int
    start_mjd: float
    observation: int
    visit: int

    @property
    def rootname(self):
        return (f"jw{survey.PROGRAM}{self.observation:03d}{self.visit:03d}_"
                f"{self.visit_group:02d}201_{self.exposure:05d}_{self.detector.lower()}")

    @property
    def channel(self):
        return inst.channel(self.detector)


def plan_exposures(config):
    """Every detector exposure of the visit, in observing order.

    Short- and long-wave filters are observed in pairs (as NIRCam does), each
    pair in its own visit group with ``ndithers`` exposures.
    """
    sw = [f for f in config.filters if inst.filter_channel(f) == "SHORT"]
    lw = [f for f in config.filters if inst.filter_channel(f) == "LONG"]
    npairs = max(len(sw), len(lw))
    tgroup = inst.group_time(inst.subarray_frame_time(config.subarray))
    duration = config.ngroups * tgroup / 86400.0 + 60.0 / 86400.0
    start = Time(config.date).mjd
    plan = []
    for k in range(npairs):
        pair = [f for f in (sw[k] if k < len(sw) else None, lw[k] if k < len(lw) else None) if f]
        for dither in range(config.ndithers):
            t0 = start + (k * config.ndithers + dither) * duration
            for filt in pair:
                for det in config.detectors:
                    if inst.channel(det) == inst.filter_channel(filt):
                        plan.append(Exposure(det, filt, 2 * (k + 1), dither + 1, dither, t0,
                                             config.observation, config.visit))
    return plan


# --------------------------------------------------------------------------
# attitude and WCS


def _field_attitude(config, dither, error=(0.0, 0.0)):
    """(ra, dec, roll) of the field reference point for one dither position."""
    from jwst.assign_wcs.pointing import _v23tosky, compute_roll_ref

    v2f, v3f = inst.FIELD_V2V3
    base = _v23tosky(v2f / 3600, v3f / 3600, config.pa_v3, config.ra, config.dec)
    dv2, dv3 = DITHERS[dither]
    ra, dec = base(v2f - dv2, v3f - dv3)  # arcsec in, degrees out
    roll = compute_roll_ref(v2f, v3f, config.pa_v3, config.ra, config.dec, v2f - dv2, v3f - dv3)
    dra, ddec = error
    dec_e = dec + ddec / 3600.0
    ra_e = ra + dra / 3600.0 / np.cos(np.deg2rad(dec))
    return float(ra_e), float(dec_e), float(roll)


def detector_wcsinfo(config, exp, error=(0.0, 0.0)):
    """WCS keywords (V2/V3 reference at the detector centre) for an exposure."""
    from jwst.assign_wcs.pointing import _v23tosky, compute_roll_ref

    ra_f, dec_f, roll_f = _field_attitude(config, exp.dither, error)
    v2f, v3f = inst.FIELD_V2V3
    v2, v3, angle = inst.DETECTOR_LAYOUT[exp.detector]
    tel = _v23tosky(v2f / 3600, v3f / 3600, roll_f, ra_f, dec_f)
    ra, dec = tel(v2, v3)
    roll = compute_roll_ref(v2f, v3f, roll_f, ra_f, dec_f, v2, v3)
    pa_v3 = compute_roll_ref(v2f, v3f, roll_f, ra_f, dec_f, 0.0, 0.0)
    ra_v1, dec_v1 = tel(0.0, 0.0)
    return {"v2_ref": v2, "v3_ref": v3, "vparity": -1, "v3yangle": angle,
            "ra_ref": float(ra) % 360.0, "dec_ref": float(dec), "roll_ref": float(roll),
            "pa_v3": float(pa_v3), "ra_v1": float(ra_v1) % 360.0, "dec_v1": float(dec_v1),
            "ra_field": ra_f, "dec_field": dec_f}


def exposure_pointing_error(config, exp):
    """Header-minus-true pointing (arcsec) of an exposure: the visit's error plus
    the exposure's own dither error, shared by every detector of the exposure."""
    dra, ddec = config.pointing_error
    if config.dither_error > 0:
        key = f"{config.seed}/{exp.observation}/{exp.visit}/{exp.visit_group}/{exp.exposure}"
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
        jitter = rng.normal(0.0, config.dither_error, 2)
        dra, ddec = dra + jitter[0], ddec + jitter[1]
    return float(dra), float(ddec)


def _fill_meta(meta, config, exp, wcsinfo, subarray=None):
    """Set every keyword the pipeline reads for a CEERS NIRCam image."""
    subarray = subarray or config.subarray
    xstart, ystart, size, noutputs = inst.subarray(subarray)
    chan = exp.channel
    meta.filename = f"{exp.rootname}_uncal.fits"
    meta.telescope = "JWST"
    meta.program.pi_name = "Finkelstein, Steven"
    meta.program.title = "The Cosmic Evolution Early Release Science (CEERS) Survey"
    meta.program.category = "ERS"
    meta.observation.program_number = survey.PROGRAM
    meta.observation.observation_number = f"{exp.observation:03d}"
    meta.observation.visit_number = f"{exp.visit:03d}"
    meta.observation.visit_group = f"{exp.visit_group:02d}"
    meta.observation.sequence_id = "2"
    meta.observation.activity_id = "01"
    meta.observation.exposure_number = f"{exp.exposure:05d}"
    meta.observation.visit_id = f"{survey.PROGRAM}{exp.observation:03d}{exp.visit:03d}"
    meta.observation.obs_id = (f"V{survey.PROGRAM}{exp.observation:03d}{exp.visit:03d}P0000000"
                               f"{exp.visit_group:02d}201")
    start = Time(exp.start_mjd, format="mjd")
    meta.observation.date = start.isot[:10]
    meta.observation.time = start.isot[11:23]
    meta.observation.date_beg = start.isot
    meta.target.proposer_name = "CEERS-EGS"
    meta.target.catalog_name = "EGS"
    meta.target.ra = config.ra
    meta.target.dec = config.dec
    meta.target.type = "FIXED"
    meta.instrument.name = "NIRCAM"
    meta.instrument.detector = exp.detector
    meta.instrument.module = inst.module(exp.detector)
    meta.instrument.channel = chan
    meta.instrument.filter = exp.filter
    meta.instrument.pupil = "CLEAR"
    meta.instrument.coronagraph = "NONE"
    m = meta.exposure
    m.type = "NRC_IMAGE"
    m.readpatt = inst.READPATT
    m.nframes = inst.NFRAMES
    m.groupgap = inst.GROUPGAP
    m.frame_divisor = inst.NFRAMES
    m.ngroups = config.ngroups
    m.nints = 1
    m.noutputs = noutputs
    m.nsamples = 1
    m.sample_time = 10
    tframe = inst.subarray_frame_time(subarray)
    m.frame_time = tframe
    m.group_time = inst.group_time(tframe)
    m.integration_time = config.ngroups * m.group_time
    m.exposure_time = m.integration_time
    m.effective_exposure_time = (config.ngroups - 1) * m.group_time
    m.duration = m.integration_time
    m.start_time = exp.start_mjd
    m.mid_time = exp.start_mjd + m.integration_time / 2 / 86400.0
    m.end_time = exp.start_mjd + m.integration_time / 86400.0
    m.count = exp.exposure
    m.psf_reference = False
    m.zero_frame = False
    m.nresets_at_start = 1
    m.nresets_between_ints = 1
    meta.subarray.name = subarray
    meta.subarray.xstart = xstart
    meta.subarray.ystart = ystart
    meta.subarray.xsize = size
    meta.subarray.ysize = size
    meta.subarray.fastaxis, meta.subarray.slowaxis = READOUT_AXES[exp.detector]
    meta.dither.primary_type = "NONE"
    meta.dither.position_number = exp.dither + 1
    meta.dither.total_points = config.ndithers
    meta.dither.subpixel_pattern = "STANDARD"
    meta.dither.x_offset = DITHERS[exp.dither][0]
    meta.dither.y_offset = DITHERS[exp.dither][1]
    meta.aperture.name = f"{exp.detector}_{subarray}"
    meta.aperture.pps_name = f"{exp.detector}_{subarray}"
    w = meta.wcsinfo
    for key in ("v2_ref", "v3_ref", "vparity", "v3yangle", "ra_ref", "dec_ref", "roll_ref"):
        setattr(w, key, wcsinfo[key])
    meta.pointing.ra_v1 = wcsinfo["ra_v1"]
    meta.pointing.dec_v1 = wcsinfo["dec_v1"]
    meta.pointing.pa_v3 = wcsinfo["pa_v3"]
    meta.velocity_aberration.scale_factor = 1.0
    meta.velocity_aberration.va_ra_ref = wcsinfo["ra_ref"]
    meta.velocity_aberration.va_dec_ref = wcsinfo["dec_ref"]
    meta.visit.type = "PRIME_TARGETED_FIXED"
    meta.visit.start_time = Time(exp.start_mjd - 0.01, format="mjd").iso


def exposure_wcs(config, exp, distortion, error=(0.0, 0.0)):
    """The pipeline's full-frame gwcs for an exposure (``assign_wcs`` on the given attitude)."""
    from jwst.assign_wcs.assign_wcs import load_wcs

    model = datamodels.ImageModel((inst.NPIX, inst.NPIX))
    _fill_meta(model.meta, config, exp, detector_wcsinfo(config, exp, error), subarray="FULL")
    with quiet_loggers("jwst", "stcal", "stpipe"):
        load_wcs(model, {"distortion": distortion, "filteroffset": None})
    return model.meta.wcs


# --------------------------------------------------------------------------
# references


def crds_cache_path():
    """The CRDS cache from the environment, or a one-line error saying how to make one."""
    path = os.environ.get("CRDS_PATH")
    if not path or not os.path.isdir(path):
        raise CeersError("CRDS_PATH does not point to a reference cache: build one with "
                         "'ceers-offline build DIR' and 'source DIR/ceers_env.sh'")
    return path


def best_references(exp, subarray="FULL"):
    """The reference files CRDS selects for an exposure, as the pipeline will."""
    params = {
        "META.INSTRUMENT.NAME": "NIRCAM",
        "META.INSTRUMENT.DETECTOR": exp.detector,
        "META.INSTRUMENT.FILTER": exp.filter,
        "META.INSTRUMENT.PUPIL": "CLEAR",
        "META.INSTRUMENT.CHANNEL": exp.channel,
        "META.INSTRUMENT.MODULE": inst.module(exp.detector),
        "META.EXPOSURE.TYPE": "NRC_IMAGE",
        "META.EXPOSURE.READPATT": inst.READPATT,
        "META.SUBARRAY.NAME": subarray,
        "META.OBSERVATION.DATE": Time(exp.start_mjd, format="mjd").isot[:10],
        "META.OBSERVATION.TIME": Time(exp.start_mjd, format="mjd").isot[11:19],
    }
    crds_cache_path()
    try:
        refs = crds.getreferences(params, reftypes=REFTYPES, observatory="jwst")
    except Exception as err:  # CRDS raises its own hierarchy; report it in one line
        raise CeersError(f"no synthetic reference for {exp.detector} {exp.filter}: "
                         f"{str(err).splitlines()[0]}") from None
    return refs


# --------------------------------------------------------------------------
# the exposure


def _seed(config, exp):
    digest = hashlib.sha256(f"{config.seed}/{exp.rootname}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


# A group averages NFRAMES frames of accumulating charge: the k-th frame's
# electrons count with weight (NFRAMES + 1 - k) / NFRAMES. Drawing the frames
# in two equal blocks with weights chosen to match that sum's mean, variance
# and covariance with the group's total reproduces the ramp's noise to second
# order with a third of the random draws.
_HALF = inst.NFRAMES // 2
_W = np.arange(inst.NFRAMES, 0, -1) / inst.NFRAMES
_MEAN, _VAR = _W.sum() / _HALF, (_W**2).sum() / _HALF
_SPREAD = np.sqrt(2 * _VAR - _MEAN**2)
BLOCK_WEIGHTS = ((_MEAN + _SPREAD) / 2, (_MEAN - _SPREAD) / 2)


def _ramp(rate_e, config, rng, gain, tframe):
    """Group-averaged accumulated charge (DN) with Poisson noise on the electrons."""
    lam = rate_e.astype(np.float64) * tframe
    draw = (lambda mean: rng.poisson(mean).astype(np.float32)) if config.noise else (
        lambda mean: mean.astype(np.float32))
    block = lam * _HALF
    charge = np.zeros(rate_e.shape, dtype=np.float32)
    groups = np.empty((config.ngroups,) + rate_e.shape, dtype=np.float32)
    for g in range(config.ngroups):
        first, second = draw(block), draw(block)
        groups[g] = (charge + BLOCK_WEIGHTS[0] * first + BLOCK_WEIGHTS[1] * second) / gain
        charge += first + second + draw(lam * inst.GROUPGAP)
    return groups


def _scene_rate(config, exp, catalog, refs, rng, template_dir):
    """Photon rate (DN/s, before the flat) of sky, sources and wisp on the detector.

    Returns the rate image and a dict of what was injected: the sources on
    the detector (true pixel positions, fluxes, stamp sizes), sky, wisp scale
    and the photometric constants used.
    """
    chan = exp.channel
    # Sources go where the pipeline's own WCS of the true attitude puts them.
    true_wcs = exposure_wcs(config, exp, refs["distortion"])
    with datamodels.FlatModel(refs["flat"]) as flat_model:
        flat = flat_model.data.astype(np.float32)
    with datamodels.NrcImgPhotomModel(refs["photom"]) as ph:
        row = [r for r in ph.phot_table if r["filter"].strip() == exp.filter][0]
        photmjsr = float(row["photmjsr"])
    with datamodels.PixelAreaModel(refs["area"]) as area:
        pixar_sr = float(area.meta.photometry.pixelarea_steradians)
    fwhm_pix = inst.PSF_FWHM[exp.filter] / inst.PIXEL_SCALE[chan]

    x, y = true_wcs.backward_transform(np.asarray(catalog["ra"]), np.asarray(catalog["dec"]))
    margin = scene.MAX_HALF
    inside = ((x > -margin) & (x < inst.NPIX + margin) & (y > -margin) & (y < inst.NPIX + margin))
    src = catalog[inside]
    src["x"], src["y"] = x[inside], y[inside]
    src["flux_mjy"] = scene.mag_to_mjy(src["mag"])
    sb = np.zeros((inst.NPIX, inst.NPIX))
    src["halfsize"] = np.zeros(len(src), dtype=int)
    if config.sources and len(src):
        sb, half = scene.render_sources(
            sb.shape, np.asarray(src["x"]), np.asarray(src["y"]), np.asarray(src["flux_mjy"]),
            fwhm_pix, np.asarray(src["r_eff"]) / inst.PIXEL_SCALE[chan], np.asarray(src["sersic_n"]),
            np.asarray(src["axis_ratio"]), np.asarray(src["theta"]), pixar_sr)
        src["halfsize"] = half
    sky = inst.SKY_MJYSR[exp.filter] * rng.uniform(0.9, 1.1) if config.sky else 0.0
    # A planar gradient across the detector (zero at its centre), in a random direction.
    angle = rng.uniform(0.0, 2.0 * np.pi)
    tilt = (config.sky_gradient * sky * np.cos(angle), config.sky_gradient * sky * np.sin(angle))
    sky_image = sky
    if config.sky_gradient:
        gy, gx = np.mgrid[0:inst.NPIX, 0:inst.NPIX] / ((inst.NPIX - 1) / 2.0) - 1.0
        sky_image = sky + tilt[0] * gx + tilt[1] * gy
    # The flat multiplies the response; photom converts surface brightness to DN/s.
    rate = ((sb + sky_image) / photmjsr * flat).astype(np.float32)

    wisp_scale, wisp = 0.0, None
    if (config.wisps and exp.detector in artifacts.WISP_DETECTORS
            and exp.filter in artifacts.WISP_FILTERS):
        path = artifacts.write_wisp_templates(template_dir, [exp.detector], [exp.filter])[0]
        wisp_scale = config.wisp_scale if config.wisp_scale is not None else rng.uniform(0.3, 1.0)
        template = np.nan_to_num(fits.getdata(path).astype(np.float32))
        wisp = np.float32(wisp_scale) * template
        rate += wisp
    rate[inst.reference_pixel_mask()] = 0.0
    return rate, dict(sources=src, sky=sky, sky_tilt=tilt, wisp_scale=wisp_scale, wisp=wisp,
                      photmjsr=photmjsr,
                      pixar_sr=pixar_sr, fwhm_pix=fwhm_pix)


def _digitize(groups, refs, region, config, rng, sigma_read, noutputs):
    """Raw 16-bit ramp: non-linearity and bias (from the references), saturation
    plateau, per-amplifier bias drifts (which reference-pixel correction
    removes) and read noise."""
    with datamodels.SuperBiasModel(refs["superbias"]) as model:
        bias = model.data[region].astype(np.float32)
    with datamodels.LinearityModel(refs["linearity"]) as model:
        coeffs = model.coeffs[(slice(None),) + region]
    plateau = inst.SATURATION_LEVEL + 2500.0
    raw = np.empty((1,) + groups.shape, dtype=np.uint16)
    for g in range(groups.shape[0]):
        counts = inst.delinearize(groups[g], coeffs) + bias
        if config.bias_drifts:
            for cs in inst.amp_slices(groups.shape[2], noutputs):
                counts[:, cs] += rng.normal(0.0, 3.0)
        if config.noise:
            counts += rng.normal(0.0, sigma_read, counts.shape)
        raw[0, g] = np.clip(np.round(np.minimum(counts, plateau)), 0, 65535).astype(np.uint16)
    return raw


def _in_region(index, region):
    """Full-frame (rows, cols) index arrays -> (kept positions, indices within ``region``)."""
    rows, cols = index
    keep = ((rows >= region[0].start) & (rows < region[0].stop)
            & (cols >= region[1].start) & (cols < region[1].stop))
    return keep, (rows[keep] - region[0].start, cols[keep] - region[1].start)


def simulate_exposure(config, exp, catalog, outdir, template_dir, keep_ideal=False):
    """Write one ``*_uncal.fits`` and its ``*_truth.fits``; return their paths.

    With ``keep_ideal`` the noiseless rate image (DN/s) that ramp fitting
    should recover is returned as well. Positions in the truth file are
    pixels of the image as written (subarray pixels for a subarray).
    """
    rng = np.random.default_rng(_seed(config, exp))
    refs = best_references(exp, config.subarray)
    region = inst.subarray_region(config.subarray)
    with datamodels.GainModel(refs["gain"]) as model:
        gain = model.data[region].astype(np.float32)
    with datamodels.ReadnoiseModel(refs["readnoise"]) as model:
        # The reference holds correlated-double-sample noise; a group averages NFRAMES reads.
        sigma_read = (config.readnoise_excess * model.data[region].astype(np.float32)
                      / np.sqrt(2.0 * inst.NFRAMES))
    with datamodels.MaskModel(refs["mask"]) as model:
        dq = model.dq
        dead_full = np.nonzero(dq & datamodels.dqflags.pixel["DEAD"])
        hot_full = np.nonzero(dq & datamodels.dqflags.pixel["HOT"])
    _, _, size, noutputs = inst.subarray(config.subarray)
    shape = (size, size)
    tframe = inst.subarray_frame_time(config.subarray)

    rate, injected = _scene_rate(config, exp, catalog, refs, rng, template_dir)
    rate = rate[region].copy()
    src = injected["sources"]
    src["x"] -= region[1].start
    src["y"] -= region[0].start
    margin = scene.MAX_HALF
    injected["sources"] = src[(src["x"] > -margin) & (src["x"] < size + margin)
                              & (src["y"] > -margin) & (src["y"] < size + margin)]
    _, dead = _in_region(dead_full, region)
    hot_keep, hot = _in_region(hot_full, region)
    if config.bad_pixels:
        rate[dead] = 0.0
    groups = _ramp(rate * gain, config, rng, gain, tframe)

    # Signals that are not photons: striping, dark current, hot pixels, then
    # the jumps of snowballs and cosmic rays.
    tmean = inst.group_mean_times(config.ngroups, tframe).astype(np.float32)
    rows = cols = None
    stripes = np.zeros(shape, dtype=np.float32)
    if config.striping:
        rows, cols = artifacts.striping_patterns(rng)
        # Each output's row pattern over the subarray's rows; one output reads a subarray.
        rows, cols = rows[:noutputs, region[0]], cols[region[1]]
        stripes = artifacts.striping_image(rows, cols, inst.reference_pixel_mask()[region])
    with datamodels.DarkModel(refs["dark"]) as dark:
        dark_groups = dark.data[: config.ngroups].astype(np.float32)
    hot_rate = inst.hot_pixel_rate(exp.detector, hot_full[0].size)[hot_keep]
    for g in range(config.ngroups):
        groups[g] += stripes * tmean[g] + dark_groups[g]
        if config.bad_pixels:
            groups[g][hot] += hot_rate * tmean[g]
    snow = artifacts.snowball_events(rng, config.snowballs, config.ngroups, shape)
    for (idx, dn, g0) in artifacts.snowball_charge(snow, shape):
        groups[g0:, idx[0], idx[1]] += dn
    duration = config.ngroups * inst.group_time(tframe)
    ncr = artifacts.cosmic_ray_count(rng, config.cosmic_rays, duration, size * size)
    crs = artifacts.cosmic_rays(rng, ncr, config.ngroups, float(np.median(gain)), shape)
    artifacts.add_cosmic_rays(groups, crs)
    if config.bad_pixels:
        groups[:, dead[0], dead[1]] = 0.0  # a dead pixel collects no charge of any origin

    raw = _digitize(groups, refs, region, config, rng, sigma_read, noutputs)
    del groups

    # Level-1b file from the real NIRCam header shipped with jwst.
    with datamodels.Level1bModel(_template_path()) as template_model:
        model = datamodels.Level1bModel(data=raw)
        model.update(template_model, only="PRIMARY")
    error = exposure_pointing_error(config, exp)
    wcsinfo = detector_wcsinfo(config, exp, error)
    _fill_meta(model.meta, config, exp, wcsinfo)
    os.makedirs(outdir, exist_ok=True)
    uncal = save_model(model, os.path.join(outdir, f"{exp.rootname}_uncal.fits"))
    model.close()

    ideal = rate + stripes
    truth = _write_truth(os.path.join(outdir, f"{exp.rootname}_truth.fits"), config, exp, dict(
        injected, rows=rows, cols=cols, snowballs=snow, cosmic_rays=crs, dead=dead, hot=hot,
        error=error, wcsinfo=wcsinfo, refs=refs, sigma_read=sigma_read, gain=gain))
    if keep_ideal:
        return uncal, truth, ideal
    return uncal, truth


def _write_truth(path, config, exp, t):
    """Everything injected into one exposure, in one FITS file."""
    hdr = fits.Header()
    hdr["ROOTNAME"] = (exp.rootname, "simulated exposure")
    hdr["DETECTOR"] = exp.detector
    hdr["FILTER"] = exp.filter
    hdr["NGROUPS"] = config.ngroups
    xstart, ystart, _, _ = inst.subarray(config.subarray)
    hdr["SUBARRAY"] = config.subarray
    hdr["SUBSTRT1"] = (xstart, "positions are pixels of the image as written")
    hdr["SUBSTRT2"] = ystart
    hdr["SKYMJYSR"] = (t["sky"], "[MJy/sr] injected sky level")
    hdr["PHOTMJSR"] = (t["photmjsr"], "[MJy/sr per DN/s] synthetic photom")
    hdr["PIXAR_SR"] = (t["pixar_sr"], "[sr] nominal pixel area")
    hdr["SKYRATE"] = (t["sky"] / t["photmjsr"], "[DN/s] sky rate before the flat")
    hdr["WISPSCL"] = (t["wisp_scale"], "wisp template scale (0: none)")
    hdr["PTGERRA"] = (t["error"][0], "[arcsec] header minus true RA*cos(Dec)")
    hdr["PTGERRD"] = (t["error"][1], "[arcsec] header minus true Dec")
    hdr["VISERRA"] = (config.pointing_error[0], "[arcsec] visit part of PTGERRA")
    hdr["VISERRD"] = (config.pointing_error[1], "[arcsec] visit part of PTGERRD")
    hdr["GAIN"] = (float(np.median(t["gain"])), "[e/DN] median of the gain reference")
    hdr["RNGROUP"] = (float(np.median(t["sigma_read"])), "[DN] median read noise of one group")
    hdr["RNEXCESS"] = (config.readnoise_excess, "true read noise / reference read noise")
    hdr["SKYGRADX"] = (t["sky_tilt"][0], "[MJy/sr] sky change from centre to x edge")
    hdr["SKYGRADY"] = (t["sky_tilt"][1], "[MJy/sr] sky change from centre to y edge")
    hdr["PSFFWHM"] = (t["fwhm_pix"], "[pixel] PSF FWHM")
    hdr["STRIPING"] = t["rows"] is not None
    hdr["NOISE"] = config.noise
    hdr["SEED"] = config.seed
    for key, name in (("ra_ref", "HDRRAREF"), ("dec_ref", "HDRDECRF"), ("roll_ref", "HDRROLL")):
        hdr[name] = (t["wcsinfo"][key], f"[deg] header {key}")
    for reftype, ref in t["refs"].items():
        hdr[f"R_{reftype[:6].upper()}"] = os.path.basename(ref)
    hdus = [fits.PrimaryHDU(header=hdr)]
    if t["rows"] is not None:
        hdus.append(fits.ImageHDU(t["rows"], name="STRIPE_ROWS"))
        hdus.append(fits.ImageHDU(t["cols"], name="STRIPE_COLS"))
    if t["wisp"] is not None:
        # The injected wisp (DN/s, before the flat), on the pixels of the image as written.
        region = inst.subarray_region(config.subarray)
        hdus.append(fits.ImageHDU(t["wisp"][region], name="WISP"))
    src = t["sources"].copy()
    src["kind"] = src["kind"].astype("U6")
    hdus.append(fits.table_to_hdu(src))
    hdus[-1].name = "SOURCES"
    hdus.append(fits.table_to_hdu(t["snowballs"]))
    hdus[-1].name = "SNOWBALLS"
    hdus.append(fits.table_to_hdu(t["cosmic_rays"]))
    hdus[-1].name = "COSMIC_RAYS"
    bad = Table()
    if config.bad_pixels:
        bad["x"] = np.concatenate([t["dead"][1], t["hot"][1]])
        bad["y"] = np.concatenate([t["dead"][0], t["hot"][0]])
        bad["kind"] = np.array(["dead"] * t["dead"][0].size + ["hot"] * t["hot"][0].size)
    else:
        bad["x"], bad["y"], bad["kind"] = np.zeros(0, int), np.zeros(0, int), np.zeros(0, "U4")
    hdus.append(fits.table_to_hdu(bad))
    hdus[-1].name = "BADPIX"
    return write_hdulist(fits.HDUList(hdus), path)


def read_truth(path):
    """Open a truth file as a dict of header values, patterns and tables."""
    with fits.open(path) as hdul:
        out = {"header": hdul[0].header.copy()}
        for hdu in hdul[1:]:
            if isinstance(hdu, fits.BinTableHDU):
                out[hdu.name.lower()] = Table.read(hdu)
            else:
                out[hdu.name.lower()] = hdu.data.copy()
    return out


def load_catalog(config):
    """The scene of a configuration: its Table, its ECSV file, or a generated one."""
    if isinstance(config.catalog, Table):
        return config.catalog
    if config.catalog:
        return scene.read_catalog(config.catalog)
    return scene.generate_catalog(config.ra, config.dec, density=config.density, seed=config.seed)


def simulate(config, outdir, template_dir=None, catalog=None):
    """Simulate every exposure of ``config`` into ``outdir``.

    Writes ``truth_catalog.ecsv``, an HST-like astrometric reference
    catalog ``reference_catalog.ecsv`` (see :func:`.scene.reference_catalog`), the wisp templates (``template_dir``,
    default ``outdir/wisp_templates``) and ``simulation.json`` listing the
    exposures. ``catalog`` is the scene if already loaded (:func:`load_catalog`).
    Returns the list of uncal paths.
    """
    template_dir = template_dir or os.path.join(outdir, "wisp_templates")
    catalog = load_catalog(config) if catalog is None else catalog
    os.makedirs(outdir, exist_ok=True)
    catalog.write(os.path.join(outdir, "truth_catalog.ecsv"), overwrite=True)
    scene.reference_catalog(catalog, seed=config.seed).write(
        os.path.join(outdir, "reference_catalog.ecsv"), overwrite=True)
    plan = plan_exposures(config)
    if not plan:
        raise CeersError("no detector observes the requested filters")
    uncals = []
    for exp in progress(plan, log, "Exposures simulated", every=1):
        uncal, _ = simulate_exposure(config, exp, catalog, outdir, template_dir)
        uncals.append(uncal)
    settings = dataclasses.asdict(config)
    settings["catalog"] = config.catalog if isinstance(config.catalog, str) else None
    with open(os.path.join(outdir, "simulation.json"), "w") as fh:
        json.dump({"config": settings, "exposures": [os.path.basename(u) for u in uncals],
                   "wisp_templates": os.path.abspath(template_dir)}, fh, indent=1)
    return uncals


# --------------------------------------------------------------------------
# command line


def _csv(text):
    return tuple(s.strip() for s in text.split(",") if s.strip())


def build_parser():
    p = make_parser("Simulate CEERS-like NIRCam uncal exposures with recorded truth.",
                    prog="ceers-simulate")
    d = SimulationConfig
    p.add_argument("outdir", help="directory for uncal, truth and catalog files")
    p.add_argument("--detectors", type=_csv, default=",".join(d.detectors),
                   help="comma-separated detectors (NRCA1-4, NRCB1-4, NRCALONG, NRCBLONG)")
    p.add_argument("--filters", type=_csv, default=",".join(d.filters),
                   help="comma-separated filters")
    p.add_argument("--ngroups", type=int, default=d.ngroups, help="groups per integration (MEDIUM8)")
    p.add_argument("--dithers", type=int, default=d.ndithers, help="dither positions")
    p.add_argument("--subarray", default=d.subarray, help=f"readout: {', '.join(inst.SUBARRAYS)}")
    p.add_argument("--observation", type=int, default=d.observation)
    p.add_argument("--visit", type=int, default=d.visit)
    p.add_argument("--pointing", default=d.pointing, help="DR0.5 grid whose centre is the field")
    p.add_argument("--ra", type=float, help="field centre RA (deg), overrides --pointing")
    p.add_argument("--dec", type=float, help="field centre Dec (deg), overrides --pointing")
    p.add_argument("--pa-v3", type=float, default=d.pa_v3, help="V3 position angle (deg)")
    p.add_argument("--pointing-error", type=float, nargs=2, default=d.pointing_error,
                   metavar=("DRA", "DDEC"), help="header minus true pointing of the visit (arcsec)")
    p.add_argument("--dither-error", type=float, default=d.dither_error,
                   help="rms (arcsec, per axis) of a further pointing error per exposure")
    p.add_argument("--catalog", help="ECSV (or other astropy table) with RA, DEC, MAG columns")
    p.add_argument("--density", type=float, default=d.density, help="generated sources per arcmin^2")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--wisp-scale", type=float, help="fixed wisp scale (default: random per image)")
    p.add_argument("--snowballs", type=int, default=d.snowballs, help="snowballs per image")
    p.add_argument("--sky-gradient", type=float, default=d.sky_gradient,
                   help="planar sky gradient: change from centre to edge, as a fraction of the sky")
    p.add_argument("--readnoise-excess", type=float, default=d.readnoise_excess,
                   help="true read noise over the reference file's")
    p.add_argument("--cosmic-ray-rate", type=float, default=d.cosmic_rays,
                   help="cosmic-ray events per cm^2 per s (0: none)")
    p.add_argument("--template-dir", help="where wisp templates are written (default OUTDIR/wisp_templates)")
    for name in ("sky", "sources", "noise", "striping", "wisps", "bad-pixels", "bias-drifts"):
        p.add_argument(f"--no-{name}", action="store_true", help=f"do not inject {name.replace('-', ' ')}")
    return p


def config_from_args(args):
    """A SimulationConfig from parsed command-line options."""
    return SimulationConfig(
        detectors=args.detectors, filters=args.filters, ngroups=args.ngroups,
        ndithers=args.dithers, subarray=args.subarray, observation=args.observation, visit=args.visit,
        pointing=args.pointing, ra=args.ra, dec=args.dec, pa_v3=args.pa_v3,
        pointing_error=tuple(args.pointing_error), dither_error=args.dither_error, seed=args.seed, catalog=args.catalog,
        density=args.density, wisp_scale=args.wisp_scale, snowballs=args.snowballs,
        sky_gradient=args.sky_gradient, readnoise_excess=args.readnoise_excess,
        cosmic_rays=args.cosmic_ray_rate, sky=not args.no_sky, sources=not args.no_sources,
        noise=not args.no_noise, striping=not args.no_striping, wisps=not args.no_wisps,
        bad_pixels=not args.no_bad_pixels, bias_drifts=not args.no_bias_drifts)


def _main(argv):
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    config = config_from_args(args)
    catalog = load_catalog(config)  # bad input fails before anything is written
    crds_cache_path()
    uncals = simulate(config, args.outdir, args.template_dir, catalog)
    log.info("Wrote %d uncal files to %s", len(uncals), args.outdir)


def main(argv=None):
    sys.exit(run(_main, argv))


if __name__ == "__main__":
    main()
