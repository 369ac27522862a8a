"""Level-3 associations of a pointing, made from header-only files named like CEERS exposures."""

import json
import os

import pytest
from astropy.io import fits

from ceers_nircam.cli import CeersError
from ceers_nircam.steps import associations


def _image(folder, obs, group, exp, det, filt, instrument="NIRCAM", suffix="cal"):
    name = f"jw01345{obs:03d}001_{group:02d}201_{exp:05d}_{det}_{suffix}.fits"
    header = fits.Header({"INSTRUME": instrument, "FILTER": filt, "OBSERVTN": f"{obs:03d}"})
    fits.PrimaryHDU(header=header).writeto(os.path.join(folder, name))
    return name


@pytest.fixture
def pointing2(tmp_path):
    """Pointing 2 as CEERS observed it: observation 2 (F200W, F444W) and observation 52."""
    cal = tmp_path / "calibrated"
    cal.mkdir()
    for obs in (2, 52):
        for exp in (1, 2, 3):
            for det in ("nrca1", "nrcb4"):
                _image(cal, obs, 6, exp, det, "F200W")
            _image(cal, obs, 6, exp, "nrcalong", "F444W")
    _image(cal, 1, 2, 1, "nrca1", "F200W")  # another pointing's image: not listed
    return tmp_path


@pytest.mark.parametrize("pointing, names", [
    ("nircam2", {2: "nircam2", 52: "nircam2b"}), ("2", {2: "nircam2", 52: "nircam2b"}),
    ("nircam1", {1: "nircam1"}), ("6", {4: "nircam6"}), ("9", {69: "nircam9"}),
])
def test_set_names_come_from_the_pointing_table(pointing, names):
    assert associations.set_names(pointing) == names


@pytest.mark.parametrize("bad, message", [("nircam5", "unknown pointing"), ("egs", "expected nircamN or N")])
def test_unknown_pointings_are_errors(bad, message):
    with pytest.raises(CeersError, match=message):
        associations.set_names(bad)


def test_plan_gives_a_set_per_observation_and_filter(pointing2):
    planned = associations.plan("nircam2", str(pointing2 / "calibrated"), str(pointing2))
    names = sorted(os.path.basename(p) for p, _ in planned)
    assert names == ["nircam2_f200w.json", "nircam2_f200w_final.json", "nircam2_f444w.json",
                     "nircam2_f444w_final.json", "nircam2b_f200w.json", "nircam2b_f200w_final.json",
                     "nircam2b_f444w.json", "nircam2b_f444w_final.json"]
    by_name = {os.path.basename(p): json.loads(associations.association_json(a)) for p, a in planned}
    asn = by_name["nircam2b_f200w.json"]
    assert (asn["asn_rule"], asn["asn_id"], asn["asn_type"]) == ("DMS_Level3_Base", "a3001", "None")
    product = asn["products"][0]
    assert product["name"] == "ceers_nircam2b_f200w"
    members = [m["expname"] for m in product["members"]]
    assert len(members) == 6 and all(m.startswith("calibrated/jw01345052001_06201_") for m in members)
    assert all(m.endswith("_tweakreg.fits") for m in members)
    assert {m["exptype"] for m in product["members"]} == {"science"}
    final = by_name["nircam2b_f200w_final.json"]["products"][0]
    assert final["name"] == "ceers_nircam2b_f200w"
    assert [m["expname"] for m in final["members"]] == [
        m.replace("_tweakreg.fits", "_a3001_match.fits") for m in members]


def test_the_written_association_is_what_jwst_reads(pointing2):
    from jwst.associations import load_asn

    path, asn = associations.plan("2", str(pointing2 / "calibrated"), str(pointing2))[0]
    with open(path, "w") as fh:
        fh.write(associations.association_json(asn))
    with open(path) as fh:
        loaded = load_asn(fh)
    assert loaded["asn_id"] == "a3001" and len(loaded["products"][0]["members"]) == 6
    name, members = associations.members(path)
    assert name == "ceers_nircam2_f200w"
    assert members[0] == os.path.join(str(pointing2), "calibrated",
                                      "jw01345002001_06201_00001_nrca1_tweakreg.fits")


def test_script_writes_every_set_or_nothing(pointing2):
    from stage_script import run

    out = pointing2 / "asn"
    assert run("stage3/associations.py", "--pointing", "nircam2", "--input_dir",
               str(pointing2 / "calibrated"), "--output_dir", str(out)).returncode == 0
    assert len(os.listdir(out)) == 8
    _image(pointing2 / "calibrated", 2, 8, 1, "mirimage", "F200W", instrument="MIRI")
    out2 = pointing2 / "asn2"
    result = run("stage3/associations.py", "--pointing", "nircam2", "--input_dir",
                 str(pointing2 / "calibrated"), "--output_dir", str(out2))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith("instrument is MIRI, expected NIRCAM")
    assert not out2.exists() or not os.listdir(out2)


def test_a_pointing_without_images_is_an_error(tmp_path):
    with pytest.raises(CeersError, match=r"no NIRCam \*_cal.fits of pointing nircam3 \(observations 3\)"):
        associations.plan("nircam3", str(tmp_path), str(tmp_path))


def test_tweakreg_files_can_be_listed_instead(pointing2):
    for name in os.listdir(pointing2 / "calibrated"):
        os.rename(pointing2 / "calibrated" / name,
                  pointing2 / "calibrated" / name.replace("_cal.fits", "_tweakreg.fits"))
    planned = associations.plan("2", str(pointing2 / "calibrated"), str(pointing2), suffix="tweakreg")
    assert len(planned) == 8
