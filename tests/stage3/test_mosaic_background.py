"""stage3/mosaic_background.py on the pointing's mosaics (``mosaics``), judged against the truth.

The truth is the noiseless scene drizzled as the data were (``mosaics.scene``); the sky RMS is
the clipped standard deviation of the mosaic less that scene where no source light falls. The
DR0.5 NIRCam parameters are used (the defaults; the real config file's [nircam] section holds
the same values). A second run adds a smooth gradient to both mosaics: the two subtracted
mosaics share their noise, so their difference shows what of the gradient is left. That run
also rescales ERR for empty apertures of 4 pixels radius (--err_radius).
"""

import dataclasses
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import stage3_data as data
from scratch import shared_dir
from ceers_nircam import apertures, history
from ceers_nircam.masking import tier_sources
from ceers_nircam.offline import validate
from ceers_nircam.steps import mosaic_background as mb

pytestmark = pytest.mark.pipeline

FILTERS = ("f150w", "f277w")
ERR_RADIUS = 4.0  # pixels: 0.12 arcsec, between the apertures the noise tests lay down


def gradient(shape, ptp):
    """A smooth surface (plane, quadratic and cross terms) with a peak-to-peak of ``ptp``."""
    ny, nx = shape
    v = np.linspace(-1, 1, ny, dtype=np.float32)[:, None]
    u = np.linspace(-1, 1, nx, dtype=np.float32)[None, :]
    g = 0.6 * u + 0.4 * v * v - 0.3 * u * v
    return (ptp * (g - g.min()) / (g.max() - g.min())).astype(np.float32)


@dataclasses.dataclass
class Backgrounds:
    plain: dict
    tilted: dict
    merged: str
    rms: dict
    md5: dict
    log: str

    @staticmethod
    def product(directory, filt, suffix):
        return os.path.join(directory, f"ceers_nircam1_{filt}_{suffix}.fits")


@pytest.fixture(scope="session")
def backgrounds(mosaics, matched):
    """The background run on the two mosaics, and on copies with a gradient of 3 sky RMS added
    (with ERR rescaled for apertures of ERR_RADIUS pixels)."""
    plain_dir = os.path.join(matched.dir, "background")
    tilted_dir = os.path.join(matched.dir, "background_gradient")
    os.makedirs(tilted_dir)
    rms, md5, tilted_inputs = {}, {}, []
    for filt in FILTERS:
        with fits.open(mosaics.i2d[filt]) as hdul:
            rms[filt] = validate.mosaic_sky_rms(hdul["SCI"].data, fits.getdata(mosaics.scene[filt], "SCI"))
            hdul["SCI"].data = hdul["SCI"].data + gradient(hdul["SCI"].data.shape, 3 * rms[filt])
            path = os.path.join(tilted_dir, os.path.basename(mosaics.i2d[filt]))
            hdul.writeto(path)
            tilted_inputs.append(path)
        md5[filt] = data.md5(mosaics.i2d[filt])
    plain = ("--output_dir", plain_dir, *(mosaics.i2d[f] for f in FILTERS))
    log, _ = data.in_parallel(lambda args: data.run_script("stage3/mosaic_background.py", "--pointing",
                                                           "nircam1", *args).stderr,
                              [plain, ("--err_radius", f"{ERR_RADIUS:g}", *tilted_inputs)])
    return Backgrounds({f: plain_dir for f in FILTERS}, {f: tilted_dir for f in FILTERS},
                       os.path.join(plain_dir, "merged_mask.fits"), rms, md5, log)


def test_products_and_inputs(backgrounds, mosaics):
    for filt in FILTERS:
        directory = backgrounds.plain[filt]
        assert data.md5(mosaics.i2d[filt]) == backgrounds.md5[filt]  # the mosaic is not changed
        with fits.open(Backgrounds.product(directory, filt, "mbkgsub1")) as out, \
                fits.open(mosaics.i2d[filt]) as i2d:
            names = [h.name for h in out]
            assert names[-3:] == ["BKGD", "BKGMASK", "APERNOISE"]
            assert "ERR" in names and "WHT" in names
            np.testing.assert_allclose(out["SCI"].data + out["BKGD"].data, i2d["SCI"].data,
                                       atol=1e-6, equal_nan=True)
            off = ~np.isfinite(i2d["SCI"].data)
            assert np.all(out["BKGMASK"].data[off] & 1)
            np.testing.assert_array_equal(out["ERR"].data, i2d["ERR"].data)  # DR0.5: as drizzled
            assert "ERRSCALE" not in out["ERR"].header
        with fits.open(Backgrounds.product(directory, filt, "bkgsub1")) as first:
            assert [h.name for h in first] == ["PRIMARY", "SCI", "BKGD", "BKGMASK"]
        for suffix in ("bkgsub1", "mbkgsub1"):
            assert history.already_done(Backgrounds.product(directory, filt, suffix), "mosaic_background")
        assert os.path.getsize(os.path.join(directory, f"ceers_nircam1_{filt}_mask.png")) > 10000
    merged = fits.getheader(backgrounds.merged, "MASK")
    assert (merged["BAND0"], merged["BAND1"]) == ("f150w", "f277w")


def test_rerun_changes_nothing(backgrounds, mosaics):
    directory = backgrounds.plain["f150w"]
    out = Backgrounds.product(directory, "f150w", "mbkgsub1")
    before = data.md5(out)
    result = data.run_script("stage3/mosaic_background.py", "--pointing", "nircam1", "--output_dir",
                             directory, *(mosaics.i2d[f] for f in FILTERS))
    assert "nothing to do" in result.stderr
    assert data.md5(out) == before
    result = data.run_script("stage3/mosaic_background.py", "--pointing", "nircam1", out, check=False)
    assert result.returncode == 1 and "already background-subtracted" in result.stderr
    # products made without rescaling ERR are not those a run with --err_radius asks for
    products = {f: {s: Backgrounds.product(directory, f, s) for s in ("bkgsub1", "mbkgsub1")}
                for f in FILTERS}
    radii = mb.MosaicBackgroundParams.aperture_radii
    assert mb.complete(products, backgrounds.merged, "mosaic_background", radii)
    assert not mb.complete(products, backgrounds.merged, "mosaic_background", radii, ERR_RADIUS)


@pytest.mark.parametrize("filt", FILTERS)
def test_injected_gradient_is_removed(backgrounds, filt):
    with fits.open(Backgrounds.product(backgrounds.plain[filt], filt, "mbkgsub1")) as a, \
            fits.open(Backgrounds.product(backgrounds.tilted[filt], filt, "mbkgsub1")) as b:
        unmasked = (a["BKGMASK"].data == 0) & (b["BKGMASK"].data == 0)
        left = (b["SCI"].data - a["SCI"].data)[unmasked]
    rms = backgrounds.rms[filt]
    print(f"\n{filt}: gradient of {3 * rms:.4g} MJy/sr peak to peak (3 sky RMS); left in the "
          f"unmasked pixels: mean {np.mean(left) / rms:+.5f}, rms {np.sqrt(np.mean(left**2)) / rms:.5f} "
          "sky RMS")
    assert np.sqrt(np.mean(left**2)) < 0.01 * rms


def _under_and_around(backgrounds, mosaics, filt):
    """The truth scene, the subtracted mosaic less it, the merged-mask pixels and the covered ones."""
    scene = fits.getdata(mosaics.scene[filt], "SCI")
    with fits.open(Backgrounds.product(backgrounds.plain[filt], filt, "mbkgsub1")) as out:
        sub, bkgmask = out["SCI"].data, out["BKGMASK"].data
    return scene, sub - scene, mb.source_pixels(bkgmask), np.isfinite(sub)


@pytest.mark.parametrize("filt", FILTERS)
def test_no_bias_under_sources(backgrounds, mosaics, filt):
    _, resid, merged, covered = _under_and_around(backgrounds, mosaics, filt)
    rms = backgrounds.rms[filt]
    under = float(np.mean(resid[merged & covered]))
    around = float(np.mean(resid[~merged & covered]))
    print(f"\n{filt}: sky RMS {rms:.4g}; background-subtracted less truth under the source mask "
          f"{under / rms:+.4f} sky RMS, elsewhere {around / rms:+.4f}")
    assert abs(under) < 0.1 * rms


@pytest.mark.parametrize("filt", FILTERS)
def test_the_merged_mask_covers_the_source_light(backgrounds, mosaics, filt):
    # The mask the final background leaves out: the merged tiers, grown where the band's
    # fitted source halos are bright (BKGMASK bits SOURCES and HALO).
    scene, _, used, covered = _under_and_around(backgrounds, mosaics, filt)
    with fits.open(Backgrounds.product(backgrounds.plain[filt], filt, "mbkgsub1")) as out:
        merged = (out["BKGMASK"].data & mb.SOURCES) != 0
    tiers = fits.getdata(Backgrounds.product(backgrounds.plain[filt], filt, "bkgsub1"), "BKGMASK")
    light = covered & (scene > 0.5 * backgrounds.rms[filt])
    coverage = float(used[light].mean())
    own = float(tier_sources(tiers)[light].mean())
    print(f"\n{filt}: pixels with source light > 0.5 sky RMS: {light.sum()} "
          f"({light.sum() / covered.sum():.1%}), covered {coverage:.2%} by the mask "
          f"({merged[light].mean():.2%} by the merged tiers, {own:.2%} by this band's own); "
          f"mask {used[covered].mean():.1%} of the mosaic (merged tiers {merged[covered].mean():.1%})")
    assert coverage >= 0.95


@pytest.mark.parametrize("filt", FILTERS)
@pytest.mark.parametrize("radius", [3, 6])
def test_empty_aperture_noise_matches_err_with_its_curve(backgrounds, mosaics, filt, radius):
    """Apertures on sky the truth says is empty, against ERR's prediction times the APERNOISE
    ratio the step measured with its own source mask, without the truth."""
    with fits.open(Backgrounds.product(backgrounds.plain[filt], filt, "mbkgsub1")) as out:
        image, err = out["SCI"].data.astype(np.float32), out["ERR"].data
        curve = Table(out["APERNOISE"].data)
    scene = fits.getdata(mosaics.scene[filt], "SCI")
    result = validate.empty_aperture_noise(image, err, scene, radius)
    factor = apertures.ratio_at(curve, radius)
    corrected = result.measured / (result.predicted * factor)
    print(f"\n{filt} r={radius}: {result.count} empty apertures; noise over ERR's prediction "
          f"{result.ratio:.3f}; the step's APERNOISE ratio {factor:.3f}; corrected {corrected:.3f}")
    assert result.count > 200
    assert corrected == pytest.approx(1.0, abs=0.10)


@pytest.mark.parametrize("filt", FILTERS)
@pytest.mark.parametrize("radius", [3, 6])
def test_err_rescaled_for_one_radius_predicts_empty_aperture_noise(backgrounds, mosaics, filt, radius):
    """With --err_radius, ERR alone predicts the noise of empty apertures (by the truth) of
    radii around the one it was rescaled for."""
    with fits.open(Backgrounds.product(backgrounds.tilted[filt], filt, "mbkgsub1")) as out:
        image, err = out["SCI"].data.astype(np.float32), out["ERR"].data
        scale = out["ERR"].header["ERRSCALE"]
        assert out["ERR"].header["ERRRAD"] == ERR_RADIUS
        assert apertures.ratio_at(Table(out["APERNOISE"].data), ERR_RADIUS) == pytest.approx(1, abs=1e-5)
    scene = fits.getdata(mosaics.scene[filt], "SCI")
    result = validate.empty_aperture_noise(image, err, scene, radius)
    print(f"\n{filt} r={radius}: {result.count} empty apertures; noise over the prediction of ERR "
          f"rescaled by {scale:.3f} for r={ERR_RADIUS:g}: {result.ratio:.3f}")
    assert result.count > 200
    assert result.ratio == pytest.approx(1.0, abs=0.10)


@pytest.mark.parametrize("filt", FILTERS)
def test_rescaled_err_keeps_the_variances_its_square(backgrounds, mosaics, filt):
    """ERR and every VAR_ array are scaled alike: ERR squared stays their sum."""
    with fits.open(Backgrounds.product(backgrounds.tilted[filt], filt, "mbkgsub1")) as out, \
            fits.open(mosaics.i2d[filt]) as i2d:
        scale = out["ERR"].header["ERRSCALE"]
        assert 0.5 < scale < 2 and scale != pytest.approx(1, abs=0.01)
        np.testing.assert_allclose(out["ERR"].data, i2d["ERR"].data * scale, rtol=1e-6, equal_nan=True)
        for name in mb.VARIANCES:
            np.testing.assert_allclose(out[name].data, i2d[name].data * scale**2, rtol=1e-5,
                                       equal_nan=True)


# --------------------------------------------------------------------------
# small crops of the mosaics: HST mosaics and bad inputs


def crop(src, dst, y0, x0, size, **primary):
    """A window of a mosaic file (every image extension, WCS moved), as a plain FITS file."""
    with fits.open(src) as hdul:
        out = [fits.PrimaryHDU(header=hdul[0].header)]
        out[0].header.update(primary)
        for hdu in hdul[1:]:
            if not isinstance(hdu, fits.ImageHDU):
                continue
            header = hdu.header.copy()
            if "CRPIX1" in header:
                header["CRPIX1"] -= x0
                header["CRPIX2"] -= y0
            out.append(fits.ImageHDU(hdu.data[..., y0:y0 + size, x0:x0 + size], header, name=hdu.name))
        fits.HDUList(out).writeto(dst)
    return dst


def hst_like(src, dst, filt):
    """An HST-like mosaic on the same pixels: a primary image (the F150W data) with FILTER."""
    with fits.open(src) as hdul:
        header = hdul["SCI"].header.copy()
        for key in ("XTENSION", "PCOUNT", "GCOUNT", "EXTNAME"):
            header.remove(key, ignore_missing=True)
        header.update(TELESCOP="HST", INSTRUME="WFC3", FILTER=filt)
        fits.PrimaryHDU(np.nan_to_num(hdul["SCI"].data), header).writeto(dst)
    return dst


@pytest.fixture(scope="session")
def crops(mosaics, tmp_path_factory):
    work = shared_dir(tmp_path_factory, "crops", __file__)
    y0, x0 = 600, 1500
    paths = {f: crop(mosaics.i2d[f], str(work / f"ceers_nircam1_{f}_i2d.fits"), y0, x0, 900)
             for f in FILTERS}
    paths["f160w"] = hst_like(paths["f150w"], str(work / "egs_wfc3_f160w_drz.fits"), "F160W")
    paths["f435w"] = hst_like(paths["f150w"], str(work / "egs_acs_f435w_drz.fits"), "F435W")
    paths["shifted"] = crop(mosaics.i2d["f277w"], str(work / "ceers_nircam1_f277w_shifted_i2d.fits"),
                            y0 + 1, x0, 900)
    config = work / "bkg.cfg"
    config.write_text("[nircam]\nbg_box_size = 10\nbg_filter_size = 5\nring_radius_in = 80\n"
                      "ring_width = 4\ntier_dilate_size = 33, 25, 21, 19\ntier_nsigma = 1.5, 1.5, 1.5, 1.5\n"
                      "tier_npixels = 15, 10, 3, 1\n\n[f160w]\ntier_nsigma = 0.8, 0.8, 0.5, 0.5\n"
                      "tier_npixels = 5, 5, 1, 1\n")
    paths["config"] = str(config)
    return paths


def test_hst_mosaics_join_the_merged_mask(crops, tmp_path):
    data.run_script("stage3/mosaic_background.py", "--pointing", "nircam1", "--config", crops["config"],
                    "--hst", crops["f160w"], "--output_dir", str(tmp_path), crops["f150w"], crops["f277w"])
    header = fits.getheader(str(tmp_path / "merged_mask.fits"), "MASK")
    assert [header[f"BAND{i}"] for i in range(3)] == ["f150w", "f277w", "f160w"]
    merged = fits.getdata(str(tmp_path / "merged_mask.fits"), "MASK")
    assert np.any(merged & 4)
    assert os.path.exists(str(tmp_path / "egs_wfc3_f160w_mbkgsub1.fits"))


@pytest.mark.parametrize("case,message", [
    ("unknown_band", "no [f435w] section for"),
    ("other_pointing", "lies outside nircam2's grid"),
    ("other_grid", "pixel grid differs"),
    ("unknown_section", "unknown band section [hst_deep]"),
    ("bad_radius", "--aperture_radii must be positive"),
    ("err_radius_outside", "--err_radius 20 lies outside --aperture_radii (1 to 12)"),
])
def test_bad_inputs_are_one_line_errors_and_write_nothing(crops, tmp_path, case, message):
    config = crops["config"]
    args = ["--pointing", "nircam1", crops["f150w"], crops["f277w"]]
    if case == "unknown_band":
        args += ["--config", config, "--hst", crops["f435w"]]
    elif case == "other_pointing":
        args[1] = "nircam2"
    elif case == "other_grid":
        args[3] = crops["shifted"]
    elif case == "bad_radius":
        args += ["--aperture_radii", "3", "0"]
    elif case == "err_radius_outside":
        args += ["--err_radius", "20"]
    else:
        config = shutil.copy(config, str(tmp_path / "bad.cfg"))
        with open(config, "a") as fh:
            fh.write("\n[hst_deep]\nbg_box_size = 10\n")
        args += ["--config", config]
    out = tmp_path / "out"
    result = data.run_script("stage3/mosaic_background.py", *args, "--output_dir", str(out), check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ERROR: ") and message in last
    assert not out.exists() or not os.listdir(out)
