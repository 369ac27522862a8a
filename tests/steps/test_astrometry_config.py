"""CEERS TweakReg config files: parsing, the sqrt(2) rule TweakReg enforces silently, results rows."""

import math

import numpy as np
import pytest
from astropy.table import Table

from ceers_nircam.cli import CeersError
from ceers_nircam.steps import astrometry

SECTION = """[jw01345002001]
# source finding parameters
detect_thresh  = 4
detect_minarea = 16
deblend        = 4
# Relative alignment:
minobj         = 20
searchrad      = 1.0
separation     = 0.1
# Note: should always have tolerance < separation, to avoid duplicate matches
tolerance      = 0.05
nclip          = 1
sigma          = 0.7
# Absolute alignment:
abs_separation = {abs_sep}
abs_tolerance  = {abs_tol}
abs_fitgeom    = rshift
"""


def _write(tmp_path, abs_sep=0.6, abs_tol=0.4, extra=""):
    path = tmp_path / "f200w.cfg"
    path.write_text(SECTION.format(abs_sep=abs_sep, abs_tol=abs_tol) + extra)
    return str(path)


def test_a_section_is_read_with_types_and_defaults(tmp_path):
    p = astrometry.read_config(_write(tmp_path), "jw01345002001", "F200W")
    assert (p.detect_minarea, p.separation, p.tolerance, p.abs_fitgeom) == (16, 0.1, 0.05, "rshift")
    assert isinstance(p.detect_minarea, int) and isinstance(p.sigma, float)
    assert (p.abs_minobj, p.abs_nclip, p.bkg_boxsize) == (20, 1, 100)  # not in the file: defaults


@pytest.mark.parametrize("filt, geom", [("F150W", "rshift"), ("F444W", "rscale")])
def test_fit_geometry_defaults_by_channel(tmp_path, filt, geom):
    path = tmp_path / "x.cfg"
    path.write_text("[jw01345001001]\nminobj = 15\n")
    assert astrometry.read_config(str(path), "jw01345001001", filt).abs_fitgeom == geom


@pytest.mark.parametrize("body, visit, message", [
    ("[jw01345002001]\nminobj = 20\n", "jw01345001001",
     "no section [jw01345001001] (sections: jw01345002001)"),
    ("[jw01345001001]\nspeling = 3\n", "jw01345001001", "[jw01345001001]: unknown key 'speling'"),
    ("[jw01345001001]\nnclip = many\n", "jw01345001001", "nclip = 'many' is not a valid int"),
    ("[jw01345001001]\nabs_fitgeom = rotate\n", "jw01345001001",
     "expected one of shift, rshift, rscale, general"),
    ("minobj = 20\n", "jw01345001001", "not a readable config file"),
])
def test_bad_sections_are_one_line_errors_naming_the_file(tmp_path, body, visit, message):
    path = tmp_path / "f150w.cfg"
    path.write_text(body)
    with pytest.raises(CeersError) as err:
        astrometry.read_config(str(path), visit, "F150W")
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(CeersError, match="no such config file"):
        astrometry.read_config(str(tmp_path / "none.cfg"), "jw01345001001", "F150W")


@pytest.mark.parametrize("sep, tol, ok", [(0.6, 0.4, True), (0.5, 0.4, False), (0.2, 0.1, True),
                                          (0.4, 0.3, False), (0.1414, 0.1, False)])
def test_the_sqrt2_rule_stops_before_tweakreg_would_skip(tmp_path, sep, tol, ok):
    path = _write(tmp_path, abs_sep=sep, abs_tol=tol)
    params = astrometry.read_config(path, "jw01345002001", "F200W")
    if ok:
        assert astrometry.check_tolerances(params, path, "jw01345002001") == (params, [])
        return
    with pytest.raises(CeersError) as err:
        astrometry.check_tolerances(params, path, "jw01345002001")
    text = str(err.value)
    for part in (path, "[jw01345002001]", f"abs_separation {sep:g} <= sqrt(2) x abs_tolerance {tol:g}",
                 "--adjust_tolerance", "absolute"):
        assert part in text


@pytest.mark.parametrize("sep, tol", [(0.5, 0.4), (0.4, 0.3), (0.2, 0.2), (1.0, 0.9)])
def test_adjust_tolerance_lowers_it_just_enough_and_says_so(tmp_path, sep, tol):
    path = _write(tmp_path, abs_sep=sep, abs_tol=tol)
    params = astrometry.read_config(path, "jw01345002001", "F200W")
    new, messages = astrometry.check_tolerances(params, path, "jw01345002001", adjust=True)
    assert sep > math.sqrt(2) * new.abs_tolerance > sep - 0.002
    assert new.tolerance == params.tolerance and len(messages) == 1
    assert f"abs_tolerance lowered to {new.abs_tolerance:g}" in messages[0] and path in messages[0]


def test_the_relative_pair_is_checked_too(tmp_path):
    path = tmp_path / "x.cfg"
    path.write_text("[jw01345001001]\nseparation = 0.1\ntolerance = 0.1\n")
    params = astrometry.read_config(str(path), "jw01345001001", "F150W")
    with pytest.raises(CeersError, match=r"separation 0.1 <= sqrt\(2\) x tolerance 0.1 .*relative"):
        astrometry.check_tolerances(params, str(path), "jw01345001001")


def test_reference_catalog_needs_ra_and_dec(tmp_path):
    good = tmp_path / "ref.ecsv"
    Table({"ra": [1.0], "Dec": [2.0], "MAG": [20.0]}).write(str(good))
    assert astrometry.read_refcat(str(good)).colnames[:2] == ["RA", "DEC"]
    bad = tmp_path / "bad.ecsv"
    Table({"x": [1.0], "y": [2.0], "MAG": [20.0]}).write(str(bad))
    with pytest.raises(CeersError, match="needs one RA and one DEC column"):
        astrometry.read_refcat(str(bad))
    with pytest.raises(CeersError, match="no such reference catalog"):
        astrometry.read_refcat(str(tmp_path / "none.ecsv"))


def test_result_rows_come_from_the_fit_info():
    fit = {"status": "SUCCESS", "fitgeom": "rshift", "nmatches": 40,
           "fitmask": np.array([True] * 37 + [False] * 3), "shift": np.array([0.25, -0.35]),
           "rmse": 0.012, "mae": 0.009, "<rot>": 0.002, "<scale>": 1.0}
    row = astrometry.result_row("absolute", "nrca1", "NRCA1", 3, fit, 0.031)
    assert (row["nmatches"], row["nfit"], row["status"]) == (40, 37, "SUCCESS")
    assert row["xshift_mas"] == pytest.approx(250.0) and row["yshift_mas"] == pytest.approx(-350.0)
    assert row["rms_mas"] == pytest.approx(12.0) and row["mae_mas"] == pytest.approx(9.0)
    assert row["shift_pix"] == pytest.approx(np.hypot(0.25, 0.35) / 0.031)
    failed = astrometry.result_row("relative", "x", "NRCA1", 1, {"status": "FAILED: not enough matches"},
                                   0.031)
    assert np.isnan(failed["rms_mas"]) and astrometry.failures([row, failed]) == [
        "relative x: FAILED: not enough matches"]
    table = astrometry.results_table([row, failed], "jw01345001001", "F150W")
    assert len(table) == 2 and table.meta["visit"] == "jw01345001001"


@pytest.mark.parametrize("sep", [0.2, 0.4, 0.5, 0.6, 1.0, 0.1414, 0.15])
def test_largest_tolerance_satisfies_the_rule(sep):
    tol = astrometry.largest_tolerance(sep)
    assert sep > math.sqrt(2) * tol and sep <= math.sqrt(2) * (tol + 0.0011)
