"""stage3/image3_part1.py: SkyMatch (measure only) and outlier detection on three aligned dithers.

Judged against the truth, where three dithers overlap: each pixel falls on
the light-sensitive area of the other two, on pixels no DQ flag marks there
(a jump-flagged pixel, fitted from fewer groups, weighs so little that the
step's median leaves it out; the numbers anywhere the dithers overlap are
printed too):

- a residual is a pixel a cosmic ray or a snowball (out to its faint wing)
  touched, that Detector1 did not set to DO_NOT_USE, and whose rate still
  lies more than 10 sigma (ERR) above the noiseless rate the simulator
  recorded: twice the 5-sigma threshold of the outlier step itself, whose
  defaults cannot be expected to catch a residual at its own threshold (the
  share flagged above 5 sigma is printed too);
- a source pixel is one where the noiseless light of sources (the noiseless
  rate less its 64-pixel block median) exceeds the
  pixel's noise, outside the reach of every source that saturates and away
  from cosmic rays and snowballs (whose flags the step grows by a pixel).

The rate files went through stage 1 (snowball expansion, wisp subtraction,
1/f striping removal) as in CEERS: left in, the dark stripes are what
outlier detection flags most. The noiseless truth is compared without the
injected wisp, which stage 1 subtracted.
"""

import json
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits
from scipy.ndimage import binary_dilation, zoom
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import dqflags

import stage3_data as data
from ceers_nircam import history
from ceers_nircam.nircam import NPIX, NREF
from ceers_nircam.offline import artifacts, validate

pytestmark = pytest.mark.pipeline

DO_NOT_USE = dqflags.pixel["DO_NOT_USE"]
OUTLIER = dqflags.pixel["OUTLIER"]
SATURATED = dqflags.pixel["SATURATED"]
RESIDUAL_SIGMA = 10.0


def _overlap(model, others, y, x, unflagged=True):
    """True where pixels (y, x) of ``model`` fall, in every other dither, on a light-sensitive
    pixel (with ``unflagged``, one that no DQ flag marks: a JUMP_DET pixel, fitted from fewer
    groups, carries so little weight that the step's median leaves it out, maskpt 0.7)."""
    inside = (x >= NREF) & (x <= NPIX - 1 - NREF) & (y >= NREF) & (y <= NPIX - 1 - NREF)
    ra, dec = model.meta.wcs(x.astype(float), y.astype(float))
    for other in others:
        ox, oy = other.meta.wcs.backward_transform(ra, dec)
        inside &= (ox >= NREF) & (ox <= NPIX - 1 - NREF) & (oy >= NREF) & (oy <= NPIX - 1 - NREF)
        xi = np.clip(np.round(np.nan_to_num(ox)).astype(int), 0, NPIX - 1)
        yi = np.clip(np.round(np.nan_to_num(oy)).astype(int), 0, NPIX - 1)
        if unflagged:
            inside &= other.dq[yi, xi] == 0
    return inside


def _block_background(image, block=64):
    n = image.shape[0] // block
    blocks = image.reshape(n, block, n, block).transpose(0, 2, 1, 3).reshape(n, n, -1)
    return zoom(np.median(blocks, axis=2), block, order=1, mode="nearest", grid_mode=True)


def _masks(truth, rate, ideal, usable):
    """(cosmic-ray/snowball pixels, residual significance, source pixels) of one exposure."""
    shape = ideal.shape
    if "wisp" in truth:  # subtracted in stage 1
        ideal = ideal - truth["wisp"]
    hit = np.zeros(shape, bool)
    hit[truth["cosmic_rays"]["y"], truth["cosmic_rays"]["x"]] = True
    hit |= artifacts.snowball_footprint(truth["snowballs"], shape, "outer")
    saturated = (rate.dq & SATURATED) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.where(hit & usable, (rate.data - ideal) / rate.err, 0.0)
    src = truth["sources"]
    reach_saturated = []
    for s in src:
        half, xi, yi = int(s["halfsize"]), int(round(s["x"])), int(round(s["y"]))
        reach_saturated.append(saturated[max(0, yi - half):yi + half + 1,
                                         max(0, xi - half):xi + half + 1].any())
    bad = np.zeros(shape, bool)
    bad[truth["badpix"]["y"], truth["badpix"]["x"]] = True
    light = ideal - _block_background(ideal)
    with np.errstate(invalid="ignore", divide="ignore"):
        agrees = np.abs(rate.data - ideal) < 5.0 * rate.err
    sources = (light > rate.err) & usable
    sources &= ~validate.source_footprint(shape, src[np.array(reach_saturated, bool)], pad=0)
    sources &= ~binary_dilation(hit | bad, iterations=2)
    return hit, excess, sources & agrees, sources


def _measure(pointing, aligned, outliers, detector):
    roots = pointing.roots("F150W", detector)
    models = {r: datamodels.ImageModel(os.path.join(aligned["dir"], f"{r}_tweakreg.fits")) for r in roots}
    rows = []
    for root in roots:
        crf_path = os.path.join(outliers["crf_dir"], f"{root}_a3001_crf.fits")
        with datamodels.ImageModel(os.path.join(pointing.rate_dir, f"{root}_rate.fits")) as rate, \
                datamodels.ImageModel(crf_path) as crf:
            ideal = fits.getdata(os.path.join(pointing.rate_dir, f"{root}_ideal.fits"))
            usable = (models[root].dq & DO_NOT_USE) == 0
            hit, excess, sources, all_sources = _masks(pointing.truth(root), rate, ideal, usable)
            flagged = ((crf.dq & OUTLIER) != 0) & usable
        others = [models[r] for r in roots if r != root]
        row = {"root": root}
        for name, mask in (("residual", excess > RESIDUAL_SIGMA), ("residual5", excess > 5.0),
                           ("source", sources), ("source_all", all_sources)):
            y, x = np.nonzero(mask)
            for tag, unflagged in (("", True), ("_any", False)):
                inside = _overlap(models[root], others, y, x, unflagged)
                row[name + tag] = int(inside.sum())
                row[f"{name}{tag}_flagged"] = int(flagged[y[inside], x[inside]].sum())
        rows.append(row)
    for model in models.values():
        model.close()
    return rows


@pytest.mark.parametrize("detector", ["NRCA1", "NRCA3"])
def test_outliers_flagged_where_three_dithers_overlap(pointing, aligned, outliers, detector):
    rows = _measure(pointing, aligned, outliers, detector)
    for r in rows:
        print(f"{r['root']}, where the other dithers' pixels are unflagged (anywhere they "
              f"overlap): residuals flagged {r['residual_flagged']}/{r['residual']} "
              f"({r['residual_any_flagged']}/{r['residual_any']}), above 5 sigma "
              f"{r['residual5_flagged']}/{r['residual5']} ({r['residual5_any_flagged']}/"
              f"{r['residual5_any']}); source pixels flagged {r['source_flagged']}/{r['source']} "
              f"({r['source_any_flagged']}/{r['source_any']}), counting those off the truth "
              f"{r['source_all_flagged']}/{r['source_all']}")
    residual = sum(r["residual"] for r in rows)
    assert residual >= 10  # cosmic rays and snowball wings that stage 1 left
    assert sum(r["residual_flagged"] for r in rows) >= 0.9 * residual
    source = sum(r["source"] for r in rows)
    assert source > 50_000
    assert sum(r["source_flagged"] for r in rows) <= 0.001 * source


def test_crf_files_carry_the_sky_and_the_steps(pointing, outliers):
    for root in pointing.roots("F150W"):
        path = os.path.join(outliers["crf_dir"], f"{root}_a3001_crf.fits")
        with datamodels.ImageModel(path) as crf:
            assert crf.meta.cal_step.skymatch == "COMPLETE"
            assert crf.meta.cal_step.outlier_detection == "COMPLETE"
            assert crf.meta.cal_step.tweakreg == "COMPLETE"  # from the astrometry, kept
            # SkyMatch measured (local, mode) and subtracted nothing.
            assert crf.meta.background.subtracted is False
            assert crf.meta.background.method == "local"
            truth = pointing.truth(root)
            assert crf.meta.background.level == pytest.approx(truth["header"]["SKYMJYSR"], rel=0.15)
            with datamodels.ImageModel(pointing.cal(root)) as cal:
                # Outliers become NaN (DO_NOT_USE); every other pixel is as it was.
                new = ((crf.dq & OUTLIER) != 0) & ((cal.dq & DO_NOT_USE) == 0)
                assert 0 < new.sum() < 0.01 * new.size and np.all(np.isnan(crf.data[new]))
                np.testing.assert_array_equal(crf.data[~new], cal.data[~new])
            assert history.already_done(crf, "image3_part1")
    # The parameter file was written beside the association, for the installed jwst.
    from ceers_nircam import pipeline

    assert os.path.exists(pipeline.default_parameter_file(pipeline.IMAGE3_PART1, outliers["dir"]))


def _association(tmp_path, members, name="nircam1_f150w.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"asn_id": "a3001", "asn_rule": "DMS_Level3_Base", "products": [
        {"name": "ceers_nircam1_f150w", "members": [{"expname": m, "exptype": "science"} for m in members]}]}))
    return str(path)


@pytest.mark.parametrize("case, expect", [
    ("empty", "association lists no science members"),
    ("missing member", "member"),
    ("other instrument", "instrument is MIRI, expected NIRCAM"),
    ("not json", "not a readable association"),
])
def test_bad_association_is_one_line_error(tmp_path, case, expect):
    out = tmp_path / "calibrated"
    if case == "empty":
        asn = _association(tmp_path, [])
    elif case == "missing member":
        asn = _association(tmp_path, ["calibrated/jw01345001001_02201_00001_nrca1_tweakreg.fits"])
    elif case == "other instrument":
        fits.PrimaryHDU(header=fits.Header({"INSTRUME": "MIRI"})).writeto(tmp_path / "miri_tweakreg.fits")
        asn = _association(tmp_path, ["miri_tweakreg.fits"])
    else:
        (tmp_path / "x.json").write_text("{not json")
        asn = str(tmp_path / "x.json")
    result = data.run_script("stage3/image3_part1.py", asn, "--output_dir", str(out), check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ERROR: ") and expect in last
    assert not out.exists() or not os.listdir(out)


def test_a_failing_pipeline_leaves_no_product(pointing, aligned, tmp_path):
    # A member that is not an image model makes Image3 fail after it started.
    root = pointing.roots("F150W", "NRCA1")[0]
    good = shutil.copy(os.path.join(aligned["dir"], f"{root}_tweakreg.fits"), tmp_path)
    bad = tmp_path / "jw01345001001_02201_00002_nrca1_tweakreg.fits"
    fits.HDUList([fits.PrimaryHDU(header=fits.Header({"INSTRUME": "NIRCAM"}))]).writeto(bad)
    asn = _association(tmp_path, [os.path.basename(good), bad.name])
    out = tmp_path / "calibrated"
    result = data.run_script("stage3/image3_part1.py", asn, "--output_dir", str(out), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("ERROR: ")
    assert not out.exists() or not [n for n in os.listdir(out) if not n.startswith(".")]
    assert not out.exists() or not os.listdir(out)
