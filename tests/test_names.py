"""File names of the reduction: exposure roots, product suffixes, associations and mosaics."""

import pytest

from ceers_nircam import names
from ceers_nircam.cli import CeersError

ROOT = "jw01345052001_02201_00003_nrcblong"


@pytest.mark.parametrize("name", [
    ROOT, f"{ROOT}_uncal.fits", f"calibrated/{ROOT}_a3001_crf.fits", f"{ROOT.upper()}_RATE.FITS",
    f"/data/x/{ROOT}_rate_pre1f.fits",
])
def test_root_of_any_product(name):
    assert names.exposure_root(name) == ROOT


@pytest.mark.parametrize("name", ["jw01345-o001_t021_nircam_clear-f115w_i2d.fits", "rate.fits",
                                  "jw01345001001_02201_00001_nrcc1_rate.fits", ""])
def test_other_names_are_errors(name):
    with pytest.raises(CeersError, match="not a JWST exposure name"):
        names.exposure_root(name)


def test_parts_of_an_exposure():
    assert names.exposure_parts(f"{ROOT}_cal.fits") == {
        "program": "01345", "observation": 52, "visit": 1, "visit_id": "jw01345052001",
        "detector": "NRCBLONG"}


def test_products_and_suffix_swaps():
    assert names.product(f"{ROOT}_uncal.fits", "rate", "calibrated") == f"calibrated/{ROOT}_rate.fits"
    assert names.product(ROOT, "cal", ".") == f"{ROOT}_cal.fits"
    assert names.swap_suffix(f"c/{ROOT}_rate.fits", "rate", "rate_pre1f") == f"c/{ROOT}_rate_pre1f.fits"
    assert names.swap_suffix(f"{ROOT}_cal.fits", "cal", "tweakreg") == f"{ROOT}_tweakreg.fits"
    with pytest.raises(CeersError, match="expected a file ending in _cal.fits"):
        names.swap_suffix(f"{ROOT}_rate.fits", "cal", "tweakreg")


def test_association_and_mosaic_names():
    assert names.association("nircam2b", "F200W") == "nircam2b_f200w.json"
    assert names.association("nircam1", "F150W", final=True, directory="asn") == "asn/nircam1_f150w_final.json"
    assert names.mosaic("nircam1", "F444W", directory="mosaics") == "mosaics/ceers_nircam1_f444w_i2d.fits"
    assert names.mosaic("nircam3", "F410M", "mbkgsub1") == "ceers_nircam3_f410m_mbkgsub1.fits"
