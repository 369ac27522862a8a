"""stage3/skywcsvar.py on the simulated pointing (``matched``), judged against the truth.

- pedestal: the sky level removed from each exposure against the mean sky the simulator
  injected (each detector and dither its own level within +-10%, and a sky surface 2-5%
  from flat);
- variance: the mean rescaled VAR_RNOISE over the pixels the step measured against the true
  per-pixel background noise: the 5-sigma-clipped variance of the _crf image less the
  noiseless scene (the simulator's noiseless rate without sky, wisp and striping, through the
  same flat and photom) and less its 64-pixel block medians (the sky), over unflagged pixels
  away from every source. It holds the read noise with its 1/f excess and the sky's Poisson
  noise, as they came out of Detector1.
"""

import os
import shutil

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

import stage3_data as data
from ceers_nircam import history
from ceers_nircam.offline import validate

pytestmark = pytest.mark.pipeline

DO_NOT_USE = datamodels.dqflags.pixel["DO_NOT_USE"]


def true_background_variance(matched, root):
    """Per-pixel variance of the noise of a _crf image (see the module docstring)."""
    truth = data.load_truth(matched.rate_dir, root)
    with datamodels.ImageModel(matched.path(root, "a3001_crf")) as crf:
        scene = data.scene_cal(root, matched.rate_dir, crf)
        return validate.background_variance(crf.data, crf.dq, scene, truth["sources"])


def test_pedestal_recovers_each_injected_sky(matched):
    rows = []
    for root in matched.roots:
        sky = data.load_truth(matched.rate_dir, root)["header"]["SKYMJYSR"]
        with datamodels.ImageModel(matched.path(root, "a3001_match")) as match:
            level = match.meta.background.level
            assert match.meta.background.subtracted is True
            assert match.meta.background.method == "local"
        rows.append((root, sky, level, max(0.003 * sky, 1e-3)))
    print("\nexposure                             injected  recovered  difference (MJy/sr)")
    for root, sky, level, tol in rows:
        print(f"{root}  {sky:.5f}   {level:.5f}   {level - sky:+.5f}  (tolerance {tol:.5f})")
    skies = np.array([r[1] for r in rows])
    assert np.ptp(skies) > 0.02  # the detectors and dithers do have different pedestals
    for root, sky, level, tol in rows:
        assert abs(level - sky) < tol, root


def test_rescaled_read_noise_variance_is_the_true_background_variance(matched):
    print("\nexposure                             true var   VAR_RNOISE factor (DR0.5 blocks -> "
          "ours)   mean rescaled / true (DR0.5 -> ours)")
    ratios, dr05 = [], []
    for root in matched.roots:
        truth = true_background_variance(matched, root)
        entry = history.entries(matched.path(root, "a3001_match"), "skywcsvar")[0]
        values = dict(kv.split("=", 1) for kv in entry.rstrip(".").split(": ", 1)[1].split(", "))
        factor, blocks = float(values["rnoise_factor"]), float(values["dr05_blocks_factor"])
        with datamodels.ImageModel(matched.path(root, "a3001_crf")) as crf:
            var_rnoise = crf.var_rnoise
            bits = fits.getdata(matched.path(root, "a3001_bkgsub1"), "BKGMASK")
            quiet = (bits == 0) & (crf.dq == 0) & np.isfinite(var_rnoise)
            mean_rn = float(np.mean(var_rnoise[quiet]))
        with datamodels.ImageModel(matched.path(root, "a3001_match")) as match:
            rescaled = float(np.mean(match.var_rnoise[quiet]))
        assert rescaled == pytest.approx(factor * mean_rn, rel=2e-3)
        ratios.append(rescaled / truth)
        dr05.append(blocks * mean_rn / truth)
        print(f"{root}  {truth:.4e}  {blocks:6.3f} -> {factor:6.3f}              "
              f"{dr05[-1]:.3f} -> {ratios[-1]:.3f}")
    print(f"mean: DR0.5 {np.mean(dr05):.3f}, ours {np.mean(ratios):.3f}")
    assert np.all(np.abs(np.array(ratios) - 1) < 0.03)


def test_match_files_have_no_zero_variance_and_no_sky_blind_pixels_in_use(matched):
    for root in matched.roots:
        with datamodels.ImageModel(matched.path(root, "a3001_match")) as match:
            for name in ("var_rnoise", "var_poisson", "var_flat"):
                assert not np.any(getattr(match, name) == 0), (root, name)
            blind = (match.dq & datamodels.dqflags.pixel["REFERENCE_PIXEL"]) != 0
            assert blind.any() and np.all(match.dq[blind] & DO_NOT_USE)


def test_crf_untouched_and_products_written(matched):
    for root in matched.roots:
        assert data.md5(matched.path(root, "a3001_crf")) == matched.crf_md5[root]
        with fits.open(matched.path(root, "a3001_bkgsub1")) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "SCI", "BKGD", "BKGMASK"]
            sci, bkgd = hdul["SCI"].data, hdul["BKGD"].data
        with datamodels.ImageModel(matched.path(root, "a3001_crf")) as crf:
            np.testing.assert_allclose(sci + bkgd, crf.data, atol=1e-6, equal_nan=True)
        assert history.already_done(matched.path(root, "a3001_match"), "skywcsvar")
        assert "VAR_RNOISE factor" in matched.logs[root] and "DR0.5's 7x7 blocks" in matched.logs[root]


def test_rerun_changes_nothing(matched):
    root = matched.roots[0]
    crf, match = matched.path(root, "a3001_crf"), matched.path(root, "a3001_match")
    before = data.md5(match)
    result = data.run_script("stage3/skywcsvar.py", "--image", crf)
    assert "nothing to do" in result.stderr
    assert data.md5(match) == before
    # Given its own output (renamed as an Image3 product), the step finds its entry and stops.
    renamed = os.path.join(os.path.dirname(match), "copy_a3001_crf.fits")
    shutil.copy(match, renamed)
    result = data.run_script("stage3/skywcsvar.py", "--image", renamed)
    assert "nothing to do" in result.stderr
    assert not os.path.exists(os.path.join(os.path.dirname(match), "copy_a3001_match.fits"))
    os.remove(renamed)


def test_saved_wcs_applied_to_an_image_not_yet_aligned(matched, pointing, aligned, tmp_path):
    root = next(r for r in matched.roots if "nrca1" in r)
    crf = str(tmp_path / f"{root}_a3001_crf.fits")
    with datamodels.ImageModel(matched.path(root, "a3001_crf")) as model, \
            datamodels.ImageModel(pointing.cal(root)) as cal:
        model.meta.wcs = cal.meta.wcs  # the unaligned WCS of Image2
        model.meta.cal_step.tweakreg = "SKIPPED"
        model.save(crf)
    shutil.copy(matched.path(root, "rate_1fmask"), tmp_path)
    result = data.run_script("stage3/skywcsvar.py", "--image", crf, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("ERROR: ") and "no saved WCS" in result.stderr
    assert not os.path.exists(str(tmp_path / f"{root}_a3001_match.fits"))
    data.run_script("stage3/skywcsvar.py", "--image", crf, "--wcs_dir", aligned["wcs_dir"])
    with datamodels.ImageModel(str(tmp_path / f"{root}_a3001_match.fits")) as out, \
            datamodels.ImageModel(matched.path(root, "a3001_crf")) as ref:
        assert out.meta.cal_step.tweakreg == "COMPLETE"
        x, y = np.meshgrid(np.linspace(10, 2037, 5), np.linspace(10, 2037, 5))
        ra1, dec1 = out.meta.wcs(x, y)
        ra0, dec0 = ref.meta.wcs(x, y)
        assert np.max(np.hypot((ra1 - ra0) * np.cos(np.deg2rad(dec0)), dec1 - dec0)) * 3.6e6 < 0.01


def _bad_copy(matched, tmp_path, edit):
    root = matched.roots[0]
    crf = str(tmp_path / f"{root}_a3001_crf.fits")
    shutil.copy(matched.path(root, "a3001_crf"), crf)
    shutil.copy(matched.path(root, "rate_1fmask"), tmp_path)
    edit(crf, root)
    return crf, root


def _no_mask(crf, root):
    os.remove(os.path.join(os.path.dirname(crf), f"{root}_rate_1fmask.fits"))


def _not_nircam(crf, root):
    with fits.open(crf, mode="update") as hdul:
        hdul[0].header["INSTRUME"] = "MIRI"


def _no_var_rnoise(crf, root):
    with fits.open(crf) as hdul:
        fits.HDUList([h for h in hdul if h.name != "VAR_RNOISE"]).writeto(crf + ".tmp")
    os.replace(crf + ".tmp", crf)


@pytest.mark.parametrize("edit,message", [
    (_no_mask, "no 1/f source mask"),
    (_not_nircam, "expected NIRCAM"),
    (_no_var_rnoise, "missing VAR_RNOISE extension"),
])
def test_bad_input_is_a_one_line_error_and_writes_nothing(matched, tmp_path, edit, message):
    crf, root = _bad_copy(matched, tmp_path, edit)
    before = data.md5(crf)
    result = data.run_script("stage3/skywcsvar.py", "--image", crf, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("ERROR: ") and message in lines[-1]
    assert data.md5(crf) == before
    assert not [n for n in os.listdir(tmp_path) if "_match" in n or "_bkgsub1" in n or ".part" in n]


def test_a_file_that_is_not_an_image3_product_is_refused(matched, tmp_path):
    root = matched.roots[0]
    cal = shutil.copy(matched.path(root, "tweakreg"), tmp_path)
    result = data.run_script("stage3/skywcsvar.py", "--image", cal, check=False)
    assert result.returncode == 1 and "expected a file ending in _crf.fits" in result.stderr
