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

import concurrent.futures as cf
import dataclasses
import functools
import json
import multiprocessing as mp
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
from ..cli import (CeersError, add_options, get_logger, make_parser, option, params_from_args, progress,
                   quiet_loggers, run, setup_logging)
from ..fitsio import atomic_path, save_model, write_hdulist
from . import artifacts, noise, psf, scene
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


def _csv(text):
    return tuple(s.strip() for s in text.split(",") if s.strip())


@dataclasses.dataclass
class SimulationConfig:
    """What to simulate. Defaults give one CEERS pointing-1-like visit, as hard as flight data."""

    detectors: tuple = option(("NRCA1", "NRCA3", "NRCALONG"), "comma-separated detectors "
                              "(NRCA1-4, NRCB1-4, NRCALONG, NRCBLONG)", type=_csv)
    filters: tuple = option(("F150W", "F277W"), "comma-separated filters", type=_csv)
    ngroups: int = option(9, "groups per integration (MEDIUM8)")
    ndithers: int = option(3, "dither positions", flag="--dithers")
    subarray: str = option("FULL", f"readout: {', '.join(inst.SUBARRAYS)} (the small ones read "
                           "through one output, for fast tests)")
    observation: int = option(1, "observation number")
    visit: int = option(1, "visit number")
    pointing: str = option("nircam1", "DR0.5 mosaic grid whose centre is the field centre")
    ra: float | None = option(None, "field centre RA (deg), overrides --pointing")
    dec: float | None = option(None, "field centre Dec (deg), overrides --pointing")
    pa_v3: float = option(survey.EPOCH1_PA_V3, "V3 position angle (deg)", flag="--pa-v3")
    pointing_error: tuple | None = option(
        None, "header minus true pointing of the visit, dRA*cos(Dec) dDec (arcsec); "
        "default: drawn with --pointing-sigma", flag="--pointing-error", nargs=2, type=float)
    pointing_sigma: float = option(0.1, "radial rms (arcsec) of the drawn visit pointing error",
                                   flag="--pointing-sigma")
    dither_error: float = option(0.003, "radial rms (arcsec) of a further pointing error per "
                                 "exposure", flag="--dither-error")
    seed: int = option(1345, "random seed")
    catalog: object = option(None, "ECSV (or other astropy table) with RA, DEC, MAG columns "
                             "(and optionally MAG_<FILTER>); default: a generated CEERS-deep scene",
                             type=str)
    density: float = option(scene.DENSITY, "generated galaxies per arcmin^2 brighter than "
                            "--faint-mag")
    faint_mag: float = option(scene.FAINT_MAG, "faint limit (AB) of generated galaxies",
                              flag="--faint-mag")
    star_density: float = option(scene.STAR_DENSITY, "generated stars per arcmin^2",
                                 flag="--star-density")
    sky: bool = option(True, "do not inject sky", flag="--no-sky")
    sources: bool = option(True, "do not inject sources", flag="--no-sources")
    noise: bool = option(True, "do not inject Poisson and read noise", flag="--no-noise")
    striping: bool = option(True, "do not inject 1/f noise", flag="--no-striping")
    wisps: bool = option(True, "do not inject wisps", flag="--no-wisps")
    bad_pixels: bool = option(True, "do not inject dead and hot pixels", flag="--no-bad-pixels")
    bias_drifts: bool = option(True, "do not inject bias drifts", flag="--no-bias-drifts")
    wisp_scale: float | None = option(None, "wisp template scale (default: drawn per image, "
                                      "0.5-1.2 as CEERS found)", flag="--wisp-scale")
    wisp_distortion: float | None = option(None, "rms of the smooth distortion of the injected "
                                           "wisp from its template (default: drawn, 0.2-0.3)",
                                           flag="--wisp-distortion")
    snowballs: int | None = option(None, "a fixed number of snowballs per image (default: "
                                   "Poisson at --snowball-rate)")
    snowball_rate: float = option(artifacts.SNOWBALL_RATE, "snowballs per second on a full "
                                  "detector", flag="--snowball-rate")
    snowball_spread: float = option(artifacts.SNOWBALL_SPREAD, "exposure-to-exposure rms of the "
                                    "snowball rate (fraction)", flag="--snowball-spread")
    cosmic_rays: float = option(inst.COSMIC_RAY_RATE, "cosmic-ray events per cm^2 per s (0: none)",
                                flag="--cosmic-ray-rate")
    sky_gradient: float | None = option(None, "largest departure of the sky from its mean over a "
                                        "detector, fraction of the sky (default: drawn, 0.02-0.05)",
                                        flag="--sky-gradient")
    sky_spread: float = option(0.1, "sky level of each image drawn within +- this fraction",
                               flag="--sky-spread")
    readnoise_excess: float = option(1.0, "white read noise over the reference file's",
                                     flag="--readnoise-excess")
    one_over_f_common: float = option(1.0, "scale of the 1/f noise common to the outputs",
                                      flag="--one-over-f-common")
    one_over_f_own: float = option(1.0, "scale of each output's own 1/f noise",
                                   flag="--one-over-f-own")
    date: str = option(EPOCH1_START, "start of the visit (ISO time)")

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


def visit_pointing_error(config, exp):
    """Header-minus-true pointing (arcsec) of a visit: given, or drawn with a radial rms
    of ``pointing_sigma`` (JWST's absolute pointing without a guide-star correction)."""
    if config.pointing_error is not None:
        return tuple(float(e) for e in config.pointing_error)
    rng = inst.keyed_rng("visit", config.seed, exp.observation, exp.visit)
    return tuple(float(e) for e in rng.normal(0.0, config.pointing_sigma / np.sqrt(2.0), 2))


def exposure_pointing_error(config, exp):
    """Header-minus-true pointing (arcsec) of an exposure: the visit's error plus
    the exposure's own dither error, shared by every detector of the exposure."""
    dra, ddec = visit_pointing_error(config, exp)
    if config.dither_error > 0:
        rng = inst.keyed_rng(config.seed, exp.observation, exp.visit, exp.visit_group, exp.exposure)
        jitter = rng.normal(0.0, config.dither_error / np.sqrt(2.0), 2)
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
    """Photon rate (DN/s, after the flat) of sky, sources and wisp on the full detector.

    Returns the rate image and a dict of what was injected: the sources on
    the detector (true pixel positions, fluxes, the share of each drawn),
    sky level and surface, wisp, and the photometric constants used.
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
    epsf = psf.effective_psf(exp.filter)
    fwhm_pix = epsf.fwhm() / inst.PIXEL_SCALE[chan]

    x, y = true_wcs.backward_transform(np.asarray(catalog["ra"]), np.asarray(catalog["dec"]))
    margin = epsf.halfsize
    inside = ((x > -margin) & (x < inst.NPIX + margin) & (y > -margin) & (y < inst.NPIX + margin))
    src = catalog[inside]
    src["x"], src["y"] = x[inside], y[inside]
    src["mag"] = scene.source_mag(src, exp.filter)  # this filter's magnitude
    src["flux_mjy"] = scene.mag_to_mjy(src["mag"])
    r_eff_pix = np.asarray(src["r_eff"]) / inst.PIXEL_SCALE[chan]
    src["halfsize"] = scene.source_extent(r_eff_pix, fwhm_pix)
    src["flux_drawn"] = np.zeros(len(src))
    sb = np.zeros((inst.NPIX, inst.NPIX))
    if config.sources and len(src):
        sb, drawn = scene.render_scene(
            sb.shape, np.asarray(src["x"]), np.asarray(src["y"]), np.asarray(src["flux_mjy"]),
            r_eff_pix, np.asarray(src["sersic_n"]), np.asarray(src["axis_ratio"]),
            np.asarray(src["theta"]), epsf, pixar_sr)
        src["flux_drawn"] = src["flux_mjy"] * drawn
    sky, coeffs = 0.0, np.zeros(5)
    if config.sky:
        sky = inst.SKY_MJYSR[exp.filter] * rng.uniform(1 - config.sky_spread, 1 + config.sky_spread)
        amplitude = (config.sky_gradient if config.sky_gradient is not None
                     else rng.uniform(0.02, 0.05))
        coeffs = scene.sky_coefficients(rng, sky, amplitude)
    sky_image = scene.sky_surface(sky, coeffs, inst.NPIX)
    # The flat multiplies the response; photom converts surface brightness to DN/s.
    rate = ((sb + sky_image) / photmjsr * flat).astype(np.float32)

    wisp_scale, wisp_rms, wisp = 0.0, 0.0, None
    if (config.wisps and exp.detector in artifacts.WISP_DETECTORS
            and exp.filter in artifacts.WISP_FILTERS):
        path = artifacts.write_wisp_templates(template_dir, [exp.detector], [exp.filter])[0]
        wisp_scale = config.wisp_scale if config.wisp_scale is not None else rng.uniform(0.5, 1.2)
        wisp_rms = (config.wisp_distortion if config.wisp_distortion is not None
                    else rng.uniform(0.2, 0.3))
        template = np.nan_to_num(fits.getdata(path).astype(np.float32))
        # The real wisp differs from the template the wisp step reads.
        wisp = np.float32(wisp_scale) * template * artifacts.wisp_distortion(rng, template, wisp_rms)
        rate += wisp
    rate[inst.reference_pixel_mask()] = 0.0
    return rate, dict(sources=src, sky=sky, sky_coeffs=coeffs, wisp_scale=wisp_scale,
                      wisp_rms=wisp_rms, wisp=wisp, photmjsr=photmjsr, pixar_sr=pixar_sr,
                      fwhm_pix=fwhm_pix, epsf=epsf)


def _digitize(groups, refs, region, config, rng, sigma_read, noutputs, one_over_f=None):
    """Raw 16-bit ramp: non-linearity and bias (from the references), saturation
    plateau, per-amplifier bias drifts (which reference-pixel correction
    removes), white read noise and the 1/f noise of the readout electronics.

    Returns the raw ramp and the last-minus-first group difference (DN, noise
    included, bias and drifts not) that ramp fitting will judge the
    signal-to-noise by.
    """
    with datamodels.SuperBiasModel(refs["superbias"]) as model:
        bias = model.data[region].astype(np.float32)
    with datamodels.LinearityModel(refs["linearity"]) as model:
        coeffs = model.coeffs[(slice(None),) + region]
    plateau = inst.SATURATION_LEVEL + 2500.0
    raw = np.empty((1,) + groups.shape, dtype=np.uint16)
    last = groups.shape[0] - 1
    span = None
    for g in range(groups.shape[0]):
        # Readout noise enters after the pixel's non-linear response.
        noise_g = np.zeros(groups.shape[1:], dtype=np.float32)
        if config.noise:
            noise_g += rng.normal(0.0, sigma_read, noise_g.shape).astype(np.float32)
        if one_over_f is not None:
            noise_g += one_over_f.frame(g)
        counts = inst.delinearize(groups[g], coeffs) + bias + noise_g
        if config.bias_drifts:
            for cs in inst.amp_slices(groups.shape[2], noutputs):
                counts[:, cs] += rng.normal(0.0, 3.0)
        raw[0, g] = np.clip(np.round(np.minimum(counts, plateau)), 0, 65535).astype(np.uint16)
        if g == 0:
            span = -(groups[0] + noise_g)
        if g == last:
            span += groups[g] + noise_g
    return raw, span


def ramp_fit_power(span, gain, readnoise_ref):
    """The weighting power ramp fitting will choose for each pixel of a ramp whose
    last-minus-first group difference is ``span`` (DN, dark removed): stcal's
    signal-to-noise in electrons, with the reference read noise of one group."""
    rnoise = readnoise_ref * gain / np.sqrt(2.0 * inst.NFRAMES)
    signal = np.maximum(span, 0.0) * gain
    snr = signal / np.sqrt(rnoise**2 + signal)
    return noise.weighting_power(snr)


def _in_region(index, region):
    """Full-frame (rows, cols) index arrays -> (kept positions, indices within ``region``)."""
    rows, cols = index
    keep = ((rows >= region[0].start) & (rows < region[0].stop)
            & (cols >= region[1].start) & (cols < region[1].stop))
    return keep, (rows[keep] - region[0].start, cols[keep] - region[1].start)


def simulate_exposure(config, exp, catalog, outdir, template_dir, keep_ideal=False):
    """Write one ``*_uncal.fits`` and its ``*_truth.fits``; return their paths.

    With ``keep_ideal`` the noiseless rate image (DN/s) that ramp fitting
    should recover is returned as well: scene, sky, wisp and the 1/f
    striping's row and column patterns. Positions in the truth file are
    pixels of the image as written (subarray pixels for a subarray).
    """
    rng = inst.keyed_rng(config.seed, exp.rootname)
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
    frame_times = inst.frame_times(config.ngroups, tframe)

    rate, injected = _scene_rate(config, exp, catalog, refs, rng, template_dir)
    rate = rate[region].copy()
    src = injected["sources"]
    src["x"] -= region[1].start
    src["y"] -= region[0].start
    margin = injected["epsf"].halfsize
    injected["sources"] = src[(src["x"] > -margin) & (src["x"] < size + margin)
                              & (src["y"] > -margin) & (src["y"] < size + margin)]
    _, dead = _in_region(dead_full, region)
    hot_keep, hot = _in_region(hot_full, region)
    if config.bad_pixels:
        rate[dead] = 0.0
    groups = _ramp(rate * gain, config, rng, gain, tframe)

    # Signals that are not photons: dark current, hot pixels, then the
    # charge of snowballs and cosmic rays arriving during the integration.
    tmean = inst.group_mean_times(config.ngroups, tframe).astype(np.float32)
    with datamodels.DarkModel(refs["dark"]) as dark:
        dark_groups = dark.data[: config.ngroups].astype(np.float32)
    hot_rate = inst.hot_pixel_rate(exp.detector, hot_full[0].size)[hot_keep]
    for g in range(config.ngroups):
        groups[g] += dark_groups[g]
        if config.bad_pixels:
            groups[g][hot] += hot_rate * tmean[g]
    duration = frame_times[-1, -1]
    area = size * size / inst.NPIX**2
    light = ~inst.reference_pixel_mask()[region]
    nsnow = (config.snowballs if config.snowballs is not None else
             artifacts.snowball_count(rng, duration, config.snowball_rate, config.snowball_spread, area))
    snow = artifacts.snowball_events(rng, nsnow, frame_times, shape)
    artifacts.add_snowballs(groups, snow, frame_times, light)
    ncr = artifacts.cosmic_ray_count(rng, config.cosmic_rays, duration, size * size)
    crs = artifacts.cosmic_rays(rng, ncr, frame_times, gain, shape, light)
    artifacts.add_cosmic_rays(groups, crs, frame_times)
    if config.bad_pixels:
        groups[:, dead[0], dead[1]] = 0.0  # a dead pixel collects no charge of any origin

    one_over_f = None
    if config.striping:
        readout = noise.Readout(exp.detector, shape, noutputs, config.ngroups, inst.NFRAMES,
                                inst.GROUPGAP)
        one_over_f = noise.OneOverF(rng, readout, light, inst.group_time(tframe),
                                    config.one_over_f_common * noise.PSD_COMMON[exp.channel],
                                    config.one_over_f_own * noise.PSD_OWN[exp.channel])
    raw, span = _digitize(groups, refs, region, config, rng, sigma_read, noutputs, one_over_f)
    del groups
    rows = cols = None
    stripes = np.zeros(shape, dtype=np.float32)
    if one_over_f is not None:
        # The striping the rate holds: each pixel's 1/f slope under the weighting
        # ramp fitting gives it, judged (as stcal does) from its own noisy ramp.
        power = ramp_fit_power(span - (dark_groups[-1] - dark_groups[0]), gain,
                               sigma_read / config.readnoise_excess * np.sqrt(2.0 * inst.NFRAMES))
        rows, cols = one_over_f.truth(power)
        stripes = artifacts.striping_image(rows, cols, inst.reference_pixel_mask()[region])

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

    truth = _write_truth(os.path.join(outdir, f"{exp.rootname}_truth.fits"), config, exp, dict(
        injected, rows=rows, cols=cols, snowballs=snow, cosmic_rays=crs, dead=dead, hot=hot,
        error=error, visit_error=visit_pointing_error(config, exp), wcsinfo=wcsinfo, refs=refs,
        sigma_read=sigma_read, gain=gain, one_over_f=one_over_f))
    if keep_ideal:
        return uncal, truth, rate + stripes
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
    hdr["SKYMJYSR"] = (t["sky"], "[MJy/sr] mean injected sky")
    for name, value in zip(("SKYC_X", "SKYC_Y", "SKYC_XX", "SKYC_YY", "SKYC_XY"), t["sky_coeffs"]):
        hdr[name] = (float(value), "[MJy/sr] sky surface term")
    hdr["PHOTMJSR"] = (t["photmjsr"], "[MJy/sr per DN/s] synthetic photom")
    hdr["PIXAR_SR"] = (t["pixar_sr"], "[sr] nominal pixel area")
    hdr["SKYRATE"] = (t["sky"] / t["photmjsr"], "[DN/s] sky rate before the flat")
    hdr["WISPSCL"] = (t["wisp_scale"], "wisp template component scale (0: none)")
    hdr["WISPRMS"] = (t["wisp_rms"], "rms departure of the wisp from template")
    hdr["PTGERRA"] = (t["error"][0], "[arcsec] header minus true RA*cos(Dec)")
    hdr["PTGERRD"] = (t["error"][1], "[arcsec] header minus true Dec")
    hdr["VISERRA"] = (t["visit_error"][0], "[arcsec] visit part of PTGERRA")
    hdr["VISERRD"] = (t["visit_error"][1], "[arcsec] visit part of PTGERRD")
    hdr["GAIN"] = (float(np.median(t["gain"])), "[e/DN] median of the gain reference")
    hdr["RNGROUP"] = (float(np.median(t["sigma_read"])), "[DN] median white read noise, one group")
    hdr["RNEXCESS"] = (config.readnoise_excess, "white read noise over the reference's")
    onef = t["one_over_f"]
    hdr["ONEFCOMM"] = (onef.psd[0] if onef else 0.0, "[DN2/Hz at 1Hz] common 1/f PSD, one frame")
    hdr["ONEFOWN"] = (onef.psd[1] if onef else 0.0, "[DN2/Hz at 1Hz] per-output 1/f PSD")
    hdr["PSFFWHM"] = (t["fwhm_pix"], "[pixel] PSF FWHM")
    hdr["PSFHALF"] = (t["epsf"].halfsize, "[pixel] half-width of the PSF stamps")
    hdr["PSFFRAC"] = (t["epsf"].fraction, "flux share inside a PSF stamp")
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


def ideal_path(directory, root):
    """Where ``simulate(..., save_ideal=True)`` writes an exposure's noiseless rate."""
    return os.path.join(directory, f"{root}_ideal.fits")


def simulate(config, outdir, template_dir=None, catalog=None, save_ideal=False, workers=1):
    """Simulate every exposure of ``config`` into ``outdir``.

    Writes ``truth_catalog.ecsv``, an HST-like astrometric reference
    catalog ``reference_catalog.ecsv`` (see :func:`.scene.reference_catalog`), the wisp templates (``template_dir``,
    default ``outdir/wisp_templates``) and ``simulation.json`` listing the
    exposures. ``catalog`` is the scene if already loaded (:func:`load_catalog`).
    With ``save_ideal`` each exposure's noiseless rate (DN/s: scene, sky, wisp
    and the striping's row and column patterns) goes to ``<root>_ideal.fits``,
    what validation compares products with. ``workers`` exposures are made at
    once, in separate processes; each exposure draws from its own seeded
    generator, so the files do not depend on it. Returns the list of uncal paths.
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
    # The templates are written before the workers start, so that no two of them write one file
    # (each exposure then finds its template current and only reads it).
    if config.wisps:
        for det, filt in sorted({(e.detector, e.filter) for e in plan}):
            artifacts.write_wisp_templates(template_dir, [det], [filt])
    one = functools.partial(_simulate_and_save, config, catalog=catalog, outdir=outdir,
                            template_dir=template_dir, save_ideal=save_ideal)
    workers = max(1, min(workers, len(plan)))
    if workers == 1:
        uncals = list(progress(map(one, plan), log, "Exposures simulated", total=len(plan), every=1))
    else:
        # Fresh interpreters rather than forks: the caller may be running threads of its own.
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            uncals = list(progress(pool.map(one, plan), log, "Exposures simulated", total=len(plan),
                                   every=1))
    settings = dataclasses.asdict(config)
    settings["catalog"] = config.catalog if isinstance(config.catalog, str) else None
    with open(os.path.join(outdir, "simulation.json"), "w") as fh:
        json.dump({"config": settings, "exposures": [os.path.basename(u) for u in uncals],
                   "wisp_templates": os.path.abspath(template_dir)}, fh, indent=1)
    return uncals


def _simulate_and_save(config, exp, catalog, outdir, template_dir, save_ideal):
    """One exposure of :func:`simulate` (its noiseless rate too, if asked); the uncal path."""
    uncal, _, *ideal = simulate_exposure(config, exp, catalog, outdir, template_dir,
                                         keep_ideal=save_ideal)
    if save_ideal:
        with atomic_path(ideal_path(outdir, exp.rootname)) as tmp:
            fits.writeto(tmp, ideal[0].astype(np.float32), overwrite=True)
    return uncal


# --------------------------------------------------------------------------
# command line


def build_parser():
    p = make_parser("Simulate CEERS-like NIRCam uncal exposures with recorded truth.",
                    prog="ceers-simulate")
    p.add_argument("outdir", help="directory for uncal, truth and catalog files")
    add_options(p, SimulationConfig)
    p.add_argument("--template-dir", help="where wisp templates are written (default OUTDIR/wisp_templates)")
    p.add_argument("--save-ideal", action="store_true",
                   help="also write each exposure's noiseless rate (<root>_ideal.fits, DN/s), "
                        "for validation against the truth")
    p.add_argument("--workers", type=int, default=1,
                   help="exposures simulated at once, one process each (default 1); the files "
                        "do not depend on it")
    return p


def _main(argv):
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    config = params_from_args(SimulationConfig, args)
    catalog = load_catalog(config)  # bad input fails before anything is written
    crds_cache_path()
    uncals = simulate(config, args.outdir, args.template_dir, catalog, save_ideal=args.save_ideal,
                      workers=args.workers)
    log.info("Wrote %d uncal files to %s", len(uncals), args.outdir)


def main(argv=None):
    sys.exit(run(_main, argv))


if __name__ == "__main__":
    main()
