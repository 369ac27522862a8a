"""The public CEERS DR0.5 inputs, read in place from ../shared/data/ceers-dr05 (never copied).

Saved TweakReg WCS models (690, written by gwcs 0.18 and asdf 2), TweakReg
config files (28), Level-3 associations and pipeline parameter files, each
checked against what this project reads or writes.
"""

import concurrent.futures
import configparser
import glob
import json
import os

import numpy as np
import pytest
from astropy.io import fits

import dr05_data
from ceers_nircam.cli import CeersError
from ceers_nircam.steps import associations, astrometry

SHARED = dr05_data.DR05
BATCH = dr05_data.path("batch_scripts")

pytestmark = dr05_data.needed


def _centre_of(path):
    """(pointing, exposure, detector, ra, dec at the detector centre, ra_ref, dec_ref) of a saved WCS."""
    from ceers_nircam.download import load_pointings, pointing_of

    wcs, wcsinfo, _ = astrometry.load_wcs(path)
    ra, dec = wcs(1023.5, 1023.5)
    name = os.path.basename(path)
    return (pointing_of(int(name[7:10]), load_pointings()), name.rsplit("_", 2)[0],
            name.split("_")[3], float(ra), float(dec), wcsinfo["ra_ref"], wcsinfo["dec_ref"])


def test_every_saved_dr05_wcs_loads_and_evaluates_on_its_pointing():
    from ceers_nircam import survey

    paths = sorted(glob.glob(os.path.join(BATCH, "tweakreg_wcs", "*_tweakreg.asdf")))
    assert len(paths) == 690
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        rows = list(pool.map(_centre_of, paths, chunksize=20))
    exposures = {}
    for pointing, exposure, detector, ra, dec, ra_ref, dec_ref in rows:
        assert np.isfinite(ra) and np.isfinite(dec)
        # The detector centre is the WCS reference point, less the CEERS correction (< 0.5").
        cosd = np.cos(np.deg2rad(dec))
        assert np.hypot((ra - ra_ref) * cosd, dec - dec_ref) * 3600 < 0.5
        exposures.setdefault((pointing, exposure), []).append((ra, dec))
    worst = 0.0
    for (pointing, exposure), centres in exposures.items():
        # A NIRCam exposure spans 5' x 2.2' (detector centres are up to 2.2' from its
        # middle): the middle of its detectors is the pointing's centre, the centre of
        # the pointing's DR0.5 mosaic grid.
        ra, dec = np.mean(centres, axis=0)
        ra0, dec0 = survey.pointing_centre(f"nircam{pointing}")
        sep = np.hypot((ra - ra0) * np.cos(np.deg2rad(dec0)), dec - dec0) * 60.0
        worst = max(worst, sep)
        assert sep < 1.0, (pointing, exposure, sep)
        for ra_d, dec_d in centres:
            assert np.hypot((ra_d - ra0) * np.cos(np.deg2rad(dec0)), dec_d - dec0) * 60.0 < 3.0
    print(f"{len(rows)} WCS files, {len(exposures)} exposures: the middle of each exposure's "
          f"detectors lies within {worst:.2f} arcmin of its pointing's centre")


def test_every_dr05_config_parses_and_ten_trip_the_rule():
    paths = sorted(glob.glob(os.path.join(BATCH, "tweakreg_cfgs", "*", "*.cfg")))
    assert len(paths) == 28
    tripping = set()
    for path in paths:
        filt = os.path.basename(path)[:-4].upper()
        sections = configparser.ConfigParser()
        sections.read(path)
        assert sections.sections()
        for visit in sections.sections():
            params = astrometry.read_config(path, visit, filt)
            assert params.abs_fitgeom == sections[visit]["abs_fitgeom"].strip()
            try:
                astrometry.check_tolerances(params, path, visit)
            except CeersError as err:
                assert path in str(err) and f"[{visit}]" in str(err)
                tripping.add(path)
                fixed, messages = astrometry.check_tolerances(params, path, visit, adjust=True)
                assert messages and astrometry.check_tolerances(fixed, path, visit)[1] == []
    assert len(tripping) == 10


def _dr05_members(path):
    with open(path) as fh:
        asn = json.load(fh)
    return asn, [os.path.basename(m["expname"]) for m in asn["products"][0]["members"]]


@pytest.mark.parametrize("pointing", ["nircam1", "nircam2", "nircam3", "nircam6"])
def test_associations_list_what_dr05_listed(tmp_path, pointing):
    # Header-only stand-ins for the pointing's cal files, named after DR0.5's members.
    cal = tmp_path / "calibrated"
    cal.mkdir()
    dr05 = {}
    for path in sorted(glob.glob(os.path.join(BATCH, pointing, f"{pointing}*_*.json"))):
        name = os.path.basename(path)
        if "all" in name:
            continue  # nircam2all: DR0.5's mosaic of both observations, not a per-observation set
        asn, members = _dr05_members(path)
        dr05[name] = (asn, members)
        filt = name.split("_")[1].split(".")[0].upper()
        for member in members:
            root = member.replace("_a3001_match.fits", "").replace("_tweakreg.fits", "")
            target = cal / f"{root}_cal.fits"
            if not target.exists():
                fits.PrimaryHDU(header=fits.Header({"INSTRUME": "NIRCAM", "FILTER": filt})).writeto(target)
    planned = associations.plan(pointing, str(cal), str(tmp_path))
    ours = {os.path.basename(p): json.loads(associations.association_json(a)) for p, a in planned}
    assert sorted(ours) == sorted(dr05)
    for name, (asn, members) in dr05.items():
        mine = ours[name]
        assert (mine["asn_rule"], mine["asn_id"]) == (asn["asn_rule"], asn["asn_id"]) == (
            "DMS_Level3_Base", "a3001")
        assert sorted(os.path.basename(m["expname"]) for m in mine["products"][0]["members"]) == \
            sorted(members)
        # DR0.5 named some products with a release tag (ceers_nircam2_f115w_dr05).
        assert asn["products"][0]["name"] in (mine["products"][0]["name"],
                                              mine["products"][0]["name"] + "_dr05")


def test_parameter_files_keep_dr05_settings():
    import asdf

    from ceers_nircam import pipeline

    def steps(path):
        with asdf.open(path) as af:
            return {s["name"]: dict(s["parameters"]) for s in af["steps"]}

    image2 = steps(os.path.join(SHARED, "image2_1.7.2.asdf"))
    assert image2["resample"]["skip"] is True
    assert pipeline.IMAGE2.step_parameters() == {"resample": {"skip": True}}
    image3 = steps(os.path.join(SHARED, "image3_part1.asdf"))
    ours = pipeline.IMAGE3_PART1.step_parameters()
    for key, value in ours["skymatch"].items():
        assert image3["skymatch"][key] == value
    for step in ("tweakreg", "resample", "source_catalog"):
        assert image3[step]["skip"] is True and ours[step] == {"skip": True}
    assert image3["outlier_detection"]["skip"] is False and ours["outlier_detection"] == {}
