"""Fixtures shared by the stage-3 tests: one simulated pointing taken step by step.

``pointing``: rate files (simulated, Detector1; cached, see stage3_data) and
their cal files made by stage2/image2.py. ``aligned``: stage3/astrometry.py
on both filters with --save_results, in a copy of the cal directory.
``outliers``: stage3/associations.py and stage3/image3_part1.py on the F150W
association of the aligned images.
"""

import dataclasses
import glob
import os
import shutil

import pytest

import stage3_data as data

@dataclasses.dataclass
class Pointing:
    """Paths of the simulated pointing: rate directory, cal directory, truth per root."""

    rate_dir: str
    cal_dir: str
    refcat: str

    def roots(self, filt=None, detector=None):
        from astropy.io import fits

        out = []
        for path in sorted(glob.glob(os.path.join(self.cal_dir, "*_cal.fits"))):
            h = fits.getheader(path)
            if (filt is None or h["FILTER"] == filt) and (detector is None or h["DETECTOR"] == detector):
                out.append(os.path.basename(path)[: -len("_cal.fits")])
        return out

    def truth(self, root):
        from ceers_nircam.offline.simulate import read_truth

        return read_truth(os.path.join(self.rate_dir, f"{root}_truth.fits"))

    def cal(self, root):
        return os.path.join(self.cal_dir, f"{root}_cal.fits")


@pytest.fixture(scope="session")
def pointing(offline_env, offline_dir, tmp_path_factory):
    """The simulated pointing through Detector1 (cached) and stage2/image2.py (always run)."""
    rate_dir = data.rate_files(offline_dir)
    cal_dir = str(tmp_path_factory.mktemp("calibrated"))
    for rate in sorted(glob.glob(os.path.join(rate_dir, "*_rate.fits"))):
        data.run_script("stage2/image2.py", rate, "--output_dir", cal_dir)
    return Pointing(rate_dir, cal_dir, os.path.join(rate_dir, "reference_catalog.ecsv"))


@pytest.fixture(scope="session")
def aligned(pointing, tmp_path_factory):
    """stage3/astrometry.py --save_results on F150W and F277W, in a copy of the cal directory.

    Returns a dict: ``dir`` (images, tables, PNGs), ``wcs_dir`` (asdf files),
    ``catalogs`` (kept source catalogs), ``logs`` (stderr per filter).
    """
    work = str(tmp_path_factory.mktemp("aligned"))
    wcs_dir = os.path.join(work, "tweakreg_wcs")
    catalogs = os.path.join(work, "catalogs")
    os.makedirs(catalogs)
    logs = {}
    for filt in ("F150W", "F277W"):
        cals = []
        for root in pointing.roots(filt):
            cals.append(shutil.copy(pointing.cal(root), work))
        result = data.run_script("stage3/astrometry.py", "--visit", data.VISIT, "--filter", filt,
                                 "--config", data.write_config(work, filt), "--refcat", pointing.refcat,
                                 "--save_results", "--wcs_dir", wcs_dir, "--catalog_dir", catalogs,
                                 *cals)
        logs[filt] = result.stdout + result.stderr
    return {"dir": work, "wcs_dir": wcs_dir, "catalogs": catalogs, "logs": logs}


@pytest.fixture(scope="session")
def outliers(pointing, aligned, tmp_path_factory):
    """Associations of pointing nircam1 and image3_part1 on its F150W set; the crf directory."""
    work = str(tmp_path_factory.mktemp("image3"))
    crf_dir = os.path.join(work, "calibrated")
    data.run_script("stage3/associations.py", "--pointing", "nircam1", "--input_dir",
                    aligned["dir"], "--output_dir", work)
    result = data.run_script("stage3/image3_part1.py", os.path.join(work, "nircam1_f150w.json"),
                             "--output_dir", crf_dir)
    return {"dir": work, "crf_dir": crf_dir, "log": result.stderr}
