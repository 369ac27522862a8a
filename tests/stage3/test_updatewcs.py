"""stage3/updatewcs.py: a saved _tweakreg.asdf applied to a cal file reproduces the aligned WCS."""

import os
import shutil

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

import dr05_data
import stage3_data as data
from ceers_nircam import history

pytestmark = pytest.mark.pipeline


def _grid(n=33):
    pos = np.linspace(-0.5, 2047.5, n)
    x, y = np.meshgrid(pos, pos)
    return x.ravel(), y.ravel()


def _sky_difference_arcsec(wcs_a, wcs_b):
    x, y = _grid()
    ra_a, dec_a = wcs_a(x, y, with_bounding_box=False)
    ra_b, dec_b = wcs_b(x, y, with_bounding_box=False)
    return np.max(np.hypot((ra_a - ra_b) * np.cos(np.deg2rad(dec_a)), dec_a - dec_b)) * 3600.0


@pytest.mark.parametrize("detector", ["NRCA3", "NRCALONG"])
def test_saved_wcs_reproduces_the_aligned_mapping(pointing, aligned, tmp_path, detector):
    filt = "F277W" if detector == "NRCALONG" else "F150W"
    root = pointing.roots(filt, detector)[1]
    cal = shutil.copy(pointing.cal(root), tmp_path)
    data.run_script("stage3/updatewcs.py", "--image", cal, "--wcs_dir", aligned["wcs_dir"])
    updated = tmp_path / f"{root}_tweakreg.fits"
    with datamodels.ImageModel(str(updated)) as new, \
            datamodels.ImageModel(os.path.join(aligned["dir"], f"{root}_tweakreg.fits")) as ref, \
            datamodels.ImageModel(cal) as old:
        diff = _sky_difference_arcsec(new.meta.wcs, ref.meta.wcs)
        moved = _sky_difference_arcsec(old.meta.wcs, ref.meta.wcs)
        print(f"{root}: saved WCS vs aligned image {diff:.2e} arcsec (the cal file's WCS: {moved:.3f})")
        assert diff <= 1e-6 and moved > 0.3
        assert new.meta.cal_step.tweakreg == "COMPLETE"
        assert new.meta.wcsinfo.ra_ref == ref.meta.wcsinfo.ra_ref
        assert new.meta.wcsinfo.s_region == ref.meta.wcsinfo.s_region
        np.testing.assert_array_equal(new.data, old.data)
        assert history.already_done(new, "updatewcs")
    # The FITS keywords (the aligned WCS's FITS approximation, SIP terms if it needed
    # any) come along too.
    h_new, h_ref = fits.getheader(updated, "SCI"), fits.getheader(
        os.path.join(aligned["dir"], f"{root}_tweakreg.fits"), "SCI")
    keys = [k for k in h_ref if k.startswith(("CTYPE", "CRVAL", "CRPIX", "CD1_", "CD2_", "A_", "B_",
                                               "AP_", "BP_"))]
    assert len(keys) >= 10
    assert {k: h_new[k] for k in keys} == {k: h_ref[k] for k in keys}


@dr05_data.needed
def test_a_dr05_saved_wcs_applies_to_an_image_of_the_same_name(pointing, tmp_path):
    # The simulated exposures carry CEERS names, so DR0.5's own WCS of
    # jw01345001001_02201_00001_nrca1 applies to ours as it would to a new
    # reduction of the real exposure.
    import asdf

    root = "jw01345001001_02201_00001_nrca1"
    wcs_dir = dr05_data.path("batch_scripts", "tweakreg_wcs")
    cal = shutil.copy(pointing.cal(root), tmp_path)
    data.run_script("stage3/updatewcs.py", "--image", cal, "--wcs_dir", wcs_dir)
    with asdf.open(os.path.join(wcs_dir, f"{root}_tweakreg.asdf")) as af, \
            datamodels.ImageModel(str(tmp_path / f"{root}_tweakreg.fits")) as model:
        assert _sky_difference_arcsec(model.meta.wcs, af["wcs"]) <= 1e-6
        assert model.meta.wcsinfo.crval1 == af["wcsinfo"]["crval1"]


def test_missing_wcs_or_wrong_image_is_one_line_error(pointing, aligned, tmp_path):
    root = pointing.roots("F150W", "NRCA1")[0]
    cal = shutil.copy(pointing.cal(root), tmp_path)
    result = data.run_script("stage3/updatewcs.py", "--image", cal, "--wcs_dir", str(tmp_path), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"ERROR: {tmp_path}/{root}_tweakreg.asdf: no such saved WCS")
    # A long-wave WCS on a short-wave image (both 2048 x 2048) is not caught by shape;
    # a subarray image is.
    small = tmp_path / f"{root.replace('nrca1', 'nrca2')}_cal.fits"
    with datamodels.ImageModel((64, 64)) as model:
        model.meta.instrument.name = "NIRCAM"
        model.meta.instrument.detector = "NRCA2"
        model.save(str(small))
    shutil.copy(os.path.join(aligned["wcs_dir"], f"{root}_tweakreg.asdf"),
                tmp_path / f"{root.replace('nrca1', 'nrca2')}_tweakreg.asdf")
    result = data.run_script("stage3/updatewcs.py", "--image", str(small), check=False)
    assert result.returncode == 1 and "saved WCS covers 2048 x 2048 pixels, the image 64 x 64" in \
        result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / f"{root.replace('nrca1', 'nrca2')}_tweakreg.fits").exists()
    assert not (tmp_path / f"{root}_tweakreg.fits").exists()
