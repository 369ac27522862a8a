"""The synthetic CRDS context: mappings CRDS accepts and references the pipeline selects."""

import os

import crds
import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from ceers_nircam.offline import instrument as inst
from ceers_nircam.offline import references

DETECTOR1_TYPES = ("mask", "saturation", "superbias", "linearity", "dark", "gain", "readnoise")
IMAGE2_TYPES = ("distortion", "flat", "photom", "area")


def _params(detector, filt):
    return {
        "META.INSTRUMENT.NAME": "NIRCAM", "META.INSTRUMENT.DETECTOR": detector,
        "META.INSTRUMENT.FILTER": filt, "META.INSTRUMENT.PUPIL": "CLEAR",
        "META.EXPOSURE.TYPE": "NRC_IMAGE", "META.EXPOSURE.READPATT": "MEDIUM8",
        "META.SUBARRAY.NAME": "FULL", "META.OBSERVATION.DATE": "2022-06-21",
        "META.OBSERVATION.TIME": "12:00:00",
    }


def test_mapping_checksums_are_valid(offline_env):
    os.environ.pop("CRDS_IGNORE_MAPPING_CHECKSUM", None)
    pmap = crds.get_cached_mapping(references.PMAP)
    names = pmap.mapping_names()
    assert references.PMAP in names
    assert any(n.endswith(".imap") for n in names)
    assert len([n for n in names if n.endswith(".rmap")]) == 11


@pytest.mark.parametrize("detector,filt", [("NRCA1", "F115W"), ("NRCB4", "F200W"),
                                           ("NRCALONG", "F444W"), ("NRCBLONG", "F277W")])
def test_every_needed_type_resolves_to_a_synthetic_file(offline_env, detector, filt):
    refs = crds.getreferences(_params(detector, filt), reftypes=DETECTOR1_TYPES + IMAGE2_TYPES,
                              observatory="jwst")
    cache = offline_env["CRDS_PATH"]
    for reftype, path in refs.items():
        assert path.startswith(cache), (reftype, path)
        assert "_synth." in os.path.basename(path)
    assert os.path.basename(refs["mask"]) == f"jwst_nircam_mask_{detector.lower()}_synth.fits"
    assert os.path.basename(refs["flat"]) == f"jwst_nircam_flat_{filt.lower()}_synth.fits"


def test_every_other_type_and_all_step_parameters_are_not_applicable(offline_env):
    types = references.pipeline_reftypes()
    assert "pars-jumpstep" in types and "pars-tweakregstep" in types and "pars-image3pipeline" in types
    others = [t for t in types if t not in DETECTOR1_TYPES + IMAGE2_TYPES]
    refs = crds.getreferences(_params("NRCA3", "F150W"), reftypes=others, observatory="jwst",
                              ignore_cache=False)
    assert set(refs.values()) == {"NOT FOUND n/a"}


def test_distortion_has_the_plate_scale_and_inverts(offline_env):
    model = datamodels.DistortionModel(os.path.join(
        offline_env["CRDS_PATH"], "references", "jwst", "jwst_nircam_distortion_nrca3_synth.asdf"))
    t = model.model
    v2, v3 = t([1023.5, 1024.5], [1023.5, 1023.5])
    assert v2[0] == pytest.approx(inst.DETECTOR_LAYOUT["NRCA3"][0])
    assert v3[0] == pytest.approx(inst.DETECTOR_LAYOUT["NRCA3"][1])
    step = np.hypot(v2[1] - v2[0], v3[1] - v3[0])
    assert step == pytest.approx(inst.PIXEL_SCALE["SHORT"], rel=1e-9)
    assert v2[1] < v2[0]  # x runs toward -V2 (ideal-frame parity -1), as on NIRCam
    x, y = t.inverse(v2, v3)
    np.testing.assert_allclose(x, [1023.5, 1024.5], atol=1e-8)
    np.testing.assert_allclose(y, [1023.5, 1023.5], atol=1e-8)


def test_reference_pixels_are_flagged_but_usable_by_refpix(offline_env):
    mask = datamodels.MaskModel(os.path.join(offline_env["CRDS_PATH"], "references", "jwst",
                                             "jwst_nircam_mask_nrca1_synth.fits"))
    ref = mask.dq[:4, 100]
    assert np.all(ref == datamodels.dqflags.pixel["REFERENCE_PIXEL"])
    dead, hot = inst.bad_pixels("NRCA1")
    assert np.all(mask.dq[dead] & datamodels.dqflags.pixel["DEAD"])
    assert np.all(mask.dq[hot] & datamodels.dqflags.pixel["HOT"])


def test_simulator_nonlinearity_inverts_the_linearity_reference(offline_env):
    coeffs = datamodels.LinearityModel(os.path.join(
        offline_env["CRDS_PATH"], "references", "jwst", "jwst_nircam_linearity_synth.fits")).coeffs
    c = coeffs[:, 100:101, 200:201].astype(np.float64)
    linear = np.array([-50.0, 0.0, 10.0, 1e3, 2e4, 4.5e4])[:, None, None]
    raw = inst.delinearize(linear, c)
    assert np.all(raw[3:] < linear[3:])  # the detector response falls short of linear
    np.testing.assert_allclose(inst.linearize(raw, c), linear, rtol=1e-10, atol=1e-8)


def test_a_cache_is_current_only_if_complete_and_of_this_version(offline_env, tmp_path):
    import json
    import shutil

    cache = offline_env["CRDS_PATH"]
    assert references.cache_is_current(cache)
    assert not references.cache_is_current(str(tmp_path / "nothing"))
    stale = tmp_path / "stale"
    stale.mkdir()
    stamp = os.path.join(cache, "ceers_synthetic_context.json")
    built = json.load(open(stamp))
    json.dump(dict(built, version="0"), open(stale / "ceers_synthetic_context.json", "w"))
    assert not references.cache_is_current(str(stale))
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(stamp, partial)
    json.dump(dict(built, detectors=["NRCA1"]), open(partial / "ceers_synthetic_context.json", "w"))
    assert references.cache_is_current(str(partial), ["NRCA1"], ["F150W"])
    assert not references.cache_is_current(str(partial), ["NRCA1", "NRCB1"], ["F150W"])
