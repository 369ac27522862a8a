"""Synthetic CRDS context: reference files and mappings the unmodified pipeline uses.

:func:`build_crds_cache` writes a local CRDS cache (flat layout) whose context
``jwst_9000.pmap`` selects synthetic NIRCam references for every type that
Detector1 and Image2 need, and ``N/A`` for every other type, ``pars-*``
included (so every step runs with its code defaults). With the environment of
:func:`crds_environment` the pipeline resolves references exactly as in
production, without a network and without ``override_`` parameters.
"""

import datetime
import hashlib
import importlib
import json
import os
import shutil

import numpy as np
from astropy.modeling import models
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import dqflags

from ..cli import get_logger, progress
from ..nircam import READOUT_AXES
from . import instrument as inst

log = get_logger("offline.references")

CONTEXT = 9000
PMAP = f"jwst_{CONTEXT}.pmap"
# Bumped whenever reference content changes, so stale caches are rebuilt.
CACHE_VERSION = "3"
USEAFTER = "2022-01-01T00:00:00"
SERVERLESS_URL = "https://jwst-serverless-mode.stsci.edu"

PIXEL = dqflags.pixel


def crds_environment(cache):
    """Environment variables that point CRDS at the synthetic cache, offline."""
    return {
        "CRDS_PATH": os.path.abspath(cache),
        "CRDS_SERVER_URL": SERVERLESS_URL,
        "CRDS_MODE": "local",
        "CRDS_CONTEXT": PMAP,
    }


# --------------------------------------------------------------------------
# reference models


def _common_meta(model, reftype, detector, description, subarray="FULL"):
    m = model.meta
    m.telescope = "JWST"
    m.instrument.name = "NIRCAM"
    m.instrument.detector = detector
    m.reftype = reftype
    m.author = "ceers-nircam synthetic instrument"
    m.pedigree = "DUMMY"
    m.description = description
    m.useafter = USEAFTER
    try:
        sub = m.subarray
    except AttributeError:  # not every reference schema carries subarray keywords
        return model
    xstart, ystart, size, _ = inst.subarray(subarray)
    sub.name, sub.xstart, sub.ystart, sub.xsize, sub.ysize = subarray, xstart, ystart, size, size
    if detector.upper() in READOUT_AXES:  # detector-independent references (ANY) carry none
        sub.fastaxis, sub.slowaxis = READOUT_AXES[detector.upper()]
    return model


def mask_model(detector):
    """Bad-pixel mask: reference-pixel border, dead and hot pixels."""
    dq = np.zeros((inst.NPIX, inst.NPIX), dtype=np.uint32)
    # Reference pixels must not carry DO_NOT_USE: the refpix step skips such pixels.
    dq[inst.reference_pixel_mask()] = PIXEL["REFERENCE_PIXEL"]
    dead, hot = inst.bad_pixels(detector)
    dq[dead] |= PIXEL["DO_NOT_USE"] | PIXEL["DEAD"]
    dq[hot] |= PIXEL["DO_NOT_USE"] | PIXEL["HOT"]
    return _common_meta(datamodels.MaskModel(dq=dq), "MASK", detector, "Synthetic bad pixel mask")


def superbias_model():
    data = inst.superbias_image()
    model = datamodels.SuperBiasModel(data=data, err=np.zeros_like(data),
                                      dq=np.zeros(data.shape, np.uint32))
    return _common_meta(model, "SUPERBIAS", "ANY", "Synthetic superbias")


def saturation_model():
    data = np.full((inst.NPIX, inst.NPIX), inst.SATURATION_LEVEL, dtype=np.float32)
    model = datamodels.SaturationModel(data=data, dq=np.zeros(data.shape, np.uint32))
    return _common_meta(model, "SATURATION", "ANY", "Synthetic saturation levels")


def linearity_model():
    coeffs = np.zeros((3, inst.NPIX, inst.NPIX), dtype=np.float32)
    coeffs[1] = 1.0
    coeffs[2] = inst.LINEARITY_K
    model = datamodels.LinearityModel(coeffs=coeffs, dq=np.zeros(coeffs.shape[1:], np.uint32))
    return _common_meta(model, "LINEARITY", "ANY", "Synthetic quadratic classical non-linearity")


def dark_model(subarray="FULL"):
    """Dark current in the MEDIUM8 readout of a subarray: each group the mean of its frames.

    The dark step does not cut full-frame darks to subarrays, and the group
    times depend on the readout, so every subarray has a dark of its own.
    """
    region = inst.subarray_region(subarray)
    t = inst.group_mean_times(inst.MAX_GROUPS, inst.subarray_frame_time(subarray))
    border = inst.reference_pixel_mask()[region]
    data = np.empty((inst.MAX_GROUPS,) + border.shape, dtype=np.float32)
    data[:] = (inst.DARK_CURRENT * t).astype(np.float32)[:, None, None]
    data[:, border] = 0.0
    model = datamodels.DarkModel(data=data, err=np.zeros_like(data),
                                 dq=np.zeros(data.shape[1:], np.uint32))
    model.meta.exposure.nframes = inst.NFRAMES
    model.meta.exposure.groupgap = inst.GROUPGAP
    model.meta.exposure.ngroups = inst.MAX_GROUPS
    model.meta.exposure.nints = 1
    model.meta.exposure.readpatt = inst.READPATT
    return _common_meta(model, "DARK", "ANY", f"Synthetic dark current, MEDIUM8, {subarray}", subarray)


def gain_model(chan):
    data = np.full((inst.NPIX, inst.NPIX), inst.GAIN[chan], dtype=np.float32)
    model = _common_meta(datamodels.GainModel(data=data), "GAIN", "ANY", f"Synthetic gain {chan}")
    model.meta.bunit_data = "electron/DN"
    return model


def readnoise_model(chan):
    data = np.full((inst.NPIX, inst.NPIX), inst.READNOISE_CDS[chan], dtype=np.float32)
    model = datamodels.ReadnoiseModel(data=data)
    model.meta.bunit_data = "DN"
    return _common_meta(model, "READNOISE", "ANY", f"Synthetic CDS read noise {chan}")


def flat_model(filt):
    data = inst.flat_image(filt)
    model = datamodels.FlatModel(data=data, err=np.full_like(data, 0.001),
                                 dq=np.zeros(data.shape, np.uint32))
    model.meta.instrument.filter = filt
    model.meta.instrument.pupil = "CLEAR"
    return _common_meta(model, "FLAT", "ANY", f"Synthetic flat field {filt}")


def photom_model():
    rows = [(f, "CLEAR", inst.PHOTMJSR[f], 0.01 * inst.PHOTMJSR[f]) for f in inst.FILTERS]
    table = np.array(rows, dtype=[("filter", "S12"), ("pupil", "S12"),
                                  ("photmjsr", "<f4"), ("uncertainty", "<f4")])
    model = datamodels.NrcImgPhotomModel(phot_table=table)
    model.meta.exposure.p_exptype = "NRC_IMAGE|NRC_TSIMAGE|NRC_FLAT|NRC_LED|NRC_TACQ|NRC_TACONFIRM|"
    return _common_meta(model, "PHOTOM", "ANY", "Synthetic photometric conversion")


def area_model(chan):
    data = np.ones((inst.NPIX, inst.NPIX), dtype=np.float32)
    model = datamodels.PixelAreaModel(data=data)
    model.meta.photometry.pixelarea_steradians = inst.pixel_area_sr(chan)
    model.meta.photometry.pixelarea_arcsecsq = inst.PIXEL_SCALE[chan] ** 2
    return _common_meta(model, "AREA", "ANY", f"Synthetic pixel area map {chan}")


def distortion_transform(detector):
    """0-based detector (x, y) -> (V2, V3) arcsec: scale, V3IdlYAngle rotation, parity -1."""
    chan = inst.channel(detector)
    v2ref, v3ref, angle = inst.DETECTOR_LAYOUT[detector]
    scale = inst.PIXEL_SCALE[chan]
    ca, sa = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    parity = -1.0
    matrix = np.array([[parity * ca, sa], [-parity * sa, ca]]) * scale
    centre = (inst.NPIX - 1) / 2.0
    return (models.Shift(-centre) & models.Shift(-centre)) | models.AffineTransformation2D(
        matrix=matrix, translation=[v2ref, v3ref])


def distortion_model(detector):
    model = datamodels.DistortionModel(model=distortion_transform(detector))
    model.meta.input_units = "pixel"
    model.meta.output_units = "arcsec"
    model.meta.instrument.module = inst.module(detector)
    model.meta.instrument.channel = inst.channel(detector)
    model.meta.instrument.p_pupil = "CLEAR|F162M|F164N|F323N|F405N|F466N|F470N|"
    model.meta.exposure.p_exptype = "NRC_IMAGE|NRC_TSIMAGE|NRC_FLAT|NRC_LED|NRC_WFSS|NRC_TACQ|NRC_TACONFIRM|"
    return _common_meta(model, "DISTORTION", detector, "Synthetic affine distortion")


# --------------------------------------------------------------------------
# CRDS mappings


def _mapping_text(header, selector_text):
    lines = ["header = {"]
    for key in sorted(header):
        lines.append(f"    {key!r} : {header[key]!r},")
    lines.append("}")
    lines.append("")
    lines.append(f"selector = {selector_text}")
    text = "\n".join(lines) + "\n"
    # CRDS checks the SHA-1 of the text with every sha1sum line removed.
    body = "".join(line + "\n" for line in text.splitlines() if "sha1sum" not in line)
    sha = hashlib.sha1(body.encode()).hexdigest()
    return text.replace("    'sha1sum' : 'PENDING',", f"    'sha1sum' : {sha!r},")


def _header(name, mapping, **extra):
    header = {"name": name, "mapping": mapping, "observatory": "JWST",
              "derived_from": "ceers-nircam synthetic context", "sha1sum": "PENDING"}
    header.update(extra)
    return header


def _rmap(reftype, parkeys, selections):
    name = f"jwst_nircam_{reftype}_{CONTEXT}.rmap"
    header = _header(name, "REFERENCE", instrument="NIRCAM", filekind=reftype.upper(),
                     parkey=(tuple(parkeys),), classes=("Match",))
    entries = []
    for key, filename in sorted(selections.items()):
        entries.append(f"    {key!r} : {filename!r},")
    return name, _mapping_text(header, "Match({\n" + "\n".join(entries) + "\n})")


def pipeline_reftypes():
    """Every reference type any jwst step can ask for, and every pars-* type."""
    from jwst.assign_wcs import AssignWcsStep
    from jwst.stpipe.integration import get_steps

    types = set(AssignWcsStep.reference_file_types)
    for class_path, _alias, _is_pipeline in get_steps():
        module_name, class_name = class_path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), class_name)
        own = getattr(cls, "reference_file_types", [])
        if isinstance(own, (list, tuple)):  # pipelines list their steps' types dynamically
            types.update(own)
        types.add(f"pars-{class_name.lower()}")
    return sorted(types)


def _reference_plan(detectors, filters):
    """(reftype, filename, model factory, {selector key: filename}) for every real reference."""
    plan = []
    chans = sorted({inst.channel(d) for d in detectors})

    def shared(reftype, factory):
        fname = f"jwst_nircam_{reftype}_synth.fits"
        plan.append((reftype, fname, factory, {d: fname for d in detectors}))

    for det in detectors:
        fname = f"jwst_nircam_mask_{det.lower()}_synth.fits"
        plan.append(("mask", fname, lambda d=det: mask_model(d), {det: fname}))
        fname = f"jwst_nircam_distortion_{det.lower()}_synth.asdf"
        plan.append(("distortion", fname, lambda d=det: distortion_model(d), {det: fname}))
    shared("superbias", superbias_model)
    shared("saturation", saturation_model)
    shared("linearity", linearity_model)
    shared("photom", photom_model)
    for sub in inst.SUBARRAYS:
        fname = "jwst_nircam_dark_synth.fits" if sub == "FULL" else f"jwst_nircam_dark_{sub.lower()}_synth.fits"
        plan.append(("dark", fname, lambda s=sub: dark_model(s), {(d, sub): fname for d in detectors}))
    for reftype, factory in (("gain", gain_model), ("readnoise", readnoise_model), ("area", area_model)):
        for chan in chans:
            fname = f"jwst_nircam_{reftype}_{chan.lower()}_synth.fits"
            dets = [d for d in detectors if inst.channel(d) == chan]
            plan.append((reftype, fname, lambda c=chan, f=factory: f(c), {d: fname for d in dets}))
    for filt in filters:
        chan = inst.filter_channel(filt)
        dets = [d for d in detectors if inst.channel(d) == chan]
        if dets:
            fname = f"jwst_nircam_flat_{filt.lower()}_synth.fits"
            plan.append(("flat", fname, lambda f=filt: flat_model(f),
                         {(d, filt, "CLEAR"): fname for d in dets}))
    return plan


PARKEYS = {
    "dark": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "flat": ("META.INSTRUMENT.DETECTOR", "META.INSTRUMENT.FILTER", "META.INSTRUMENT.PUPIL"),
}


def _stamp(detectors, filters):
    return json.dumps({"version": CACHE_VERSION, "detectors": sorted(detectors),
                       "filters": sorted(filters)}, sort_keys=True)


def cache_is_current(cache, detectors=inst.DETECTORS, filters=inst.FILTERS):
    """True when ``cache`` holds a complete build for these detectors and filters."""
    stamp = os.path.join(cache, "ceers_synthetic_context.json")
    if not os.path.exists(stamp):
        return False
    with open(stamp) as fh:
        built = json.load(fh)
    return (built["version"] == CACHE_VERSION and set(detectors) <= set(built["detectors"])
            and set(filters) <= set(built["filters"]))


def build_crds_cache(cache, detectors=inst.DETECTORS, filters=inst.FILTERS, force=False):
    """Write the synthetic CRDS cache into directory ``cache``; return its path.

    Built in a temporary sibling directory and renamed into place, so an
    interrupted build never leaves a cache that looks complete. An existing
    complete build covering the requested detectors and filters is reused.
    """
    detectors = [d.upper() for d in detectors]
    filters = [f.upper() for f in filters]
    for d in detectors:
        inst.channel(d)
    for f in filters:
        inst.filter_channel(f)
    cache = os.path.abspath(cache)
    if not force and cache_is_current(cache, detectors, filters):
        log.info("Synthetic CRDS cache in %s is current", cache)
        return cache
    tmp = cache + ".building"
    shutil.rmtree(tmp, ignore_errors=True)
    refdir = os.path.join(tmp, "references", "jwst")
    mapdir = os.path.join(tmp, "mappings", "jwst")
    cfgdir = os.path.join(tmp, "config", "jwst")
    for d in (refdir, mapdir, cfgdir):
        os.makedirs(d)

    plan = _reference_plan(detectors, filters)
    selections = {}
    for reftype, fname, factory, select in progress(plan, log, "Reference files written"):
        model = factory()
        model.save(os.path.join(refdir, fname))
        model.close()
        selections.setdefault(reftype, {}).update(select)

    imap_selector = {}
    mapping_names = [PMAP]
    for reftype in pipeline_reftypes():
        if reftype in selections:
            parkeys = PARKEYS.get(reftype, ("META.INSTRUMENT.DETECTOR",))
            name, text = _rmap(reftype, parkeys, selections[reftype])
            with open(os.path.join(mapdir, name), "w") as fh:
                fh.write(text)
            imap_selector[reftype] = name
            mapping_names.append(name)
        else:
            imap_selector[reftype] = "N/A"
    imap = f"jwst_nircam_{CONTEXT}.imap"
    mapping_names.append(imap)
    body = "{\n" + "\n".join(f"    {k!r} : {v!r}," for k, v in sorted(imap_selector.items())) + "\n}"
    with open(os.path.join(mapdir, imap), "w") as fh:
        fh.write(_mapping_text(_header(imap, "INSTRUMENT", instrument="NIRCAM",
                                       parkey=("REFTYPE",)), body))
    pmap_text = _mapping_text(_header(PMAP, "PIPELINE", parkey=("META.INSTRUMENT.NAME",)),
                              "{\n    'NIRCAM' : " + repr(imap) + ",\n}")
    with open(os.path.join(mapdir, PMAP), "w") as fh:
        fh.write(pmap_text)

    server_config = {
        "observatory": "jwst",
        "operational_context": PMAP,
        "edit_context": PMAP,
        "latest_context": PMAP,
        "bad_files_list": [],
        "force_remote_mode": False,
        "last_synced": datetime.datetime.now(datetime.UTC).isoformat(),
        "mappings": sorted(mapping_names),
    }
    with open(os.path.join(cfgdir, "server_config"), "w") as fh:
        fh.write(repr(server_config))
    with open(os.path.join(cfgdir, "ref_cache_subdir_mode"), "w") as fh:
        fh.write("flat")
    with open(os.path.join(tmp, "ceers_synthetic_context.json"), "w") as fh:
        fh.write(_stamp(detectors, filters))

    shutil.rmtree(cache, ignore_errors=True)
    os.replace(tmp, cache)
    log.info("Synthetic CRDS cache written to %s (%d reference files)", cache, len(plan))
    return cache

