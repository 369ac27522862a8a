"""Fixtures shared by the stage-3 tests: one simulated pointing taken step by step.

``pointing``: rate files (simulated, Detector1; cached, see stage3_data) and
their cal files made by stage2/image2.py. ``aligned``: stage3/astrometry.py
on both filters with --save_results, in a copy of the cal directory.
``outliers``: stage3/associations.py and stage3/image3_part1.py on the F150W
association of the aligned images. ``matched``: image3_part1.py on both filters and
stage3/skywcsvar.py on every image. ``mosaics``: stage3/make_mosaic.py of both filters on one
derived grid, and the noiseless scene drizzled alike.
"""

import dataclasses
import glob
import logging
import os
import shutil

import pytest

import stage3_data as data
from scratch import shared_dir

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
    cal_dir = str(shared_dir(tmp_path_factory, "calibrated", __file__))
    data.in_parallel(lambda rate: data.run_script("stage2/image2.py", rate, "--output_dir", cal_dir),
                     sorted(glob.glob(os.path.join(rate_dir, "*_rate.fits"))))
    return Pointing(rate_dir, cal_dir, os.path.join(rate_dir, "reference_catalog.ecsv"))


@pytest.fixture(scope="session")
def aligned(pointing, tmp_path_factory):
    """stage3/astrometry.py --save_results on F150W and F277W, in a copy of the cal directory.

    Returns a dict: ``dir`` (images, tables, PNGs), ``wcs_dir`` (asdf files),
    ``catalogs`` (kept source catalogs), ``logs`` (stderr per filter).
    """
    work = str(shared_dir(tmp_path_factory, "aligned", __file__))
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
    work = str(shared_dir(tmp_path_factory, "image3", __file__))
    crf_dir = os.path.join(work, "calibrated")
    data.run_script("stage3/associations.py", "--pointing", "nircam1", "--input_dir",
                    aligned["dir"], "--output_dir", work)
    result = data.run_script("stage3/image3_part1.py", os.path.join(work, "nircam1_f150w.json"),
                             "--output_dir", crf_dir)
    return {"dir": work, "crf_dir": crf_dir, "log": result.stderr}


@dataclasses.dataclass
class Matched:
    """The pointing's images through skywcsvar.py: ``dir`` holds the associations, ``cal_dir``
    (``<dir>/calibrated``) the 1/f masks, _tweakreg, _crf, _bkgsub1 and _match files."""

    dir: str
    cal_dir: str
    rate_dir: str
    roots: list
    logs: dict
    crf_md5: dict

    def path(self, root, suffix):
        return os.path.join(self.cal_dir, f"{root}_{suffix}.fits")


@pytest.fixture(scope="session")
def matched(pointing, aligned, tmp_path_factory):
    """Stage 3 up to the _match files, as CEERS runs it, on the aligned pointing.

    The aligned images of ``aligned`` (stage 1 as CEERS ran it, Image2, astrometry) and the
    1/f source masks stage 1 wrote beside the rate files are copied into ``calibrated/``;
    then associations.py, image3_part1.py on both filters, and skywcsvar.py on every _crf
    file (run in this process; their log lines kept per exposure).
    """
    work = str(shared_dir(tmp_path_factory, "matched", __file__))
    cal = os.path.join(work, "calibrated")
    os.makedirs(cal)
    roots = pointing.roots()
    for root in roots:
        shutil.copy(os.path.join(aligned["dir"], f"{root}_tweakreg.fits"), cal)
        shutil.copy(os.path.join(pointing.rate_dir, f"{root}_rate_1fmask.fits"), cal)
    data.run_in_process("stage3/associations.py", "--pointing", "nircam1", "--input_dir", cal,
                        "--output_dir", work, "--suffix", "tweakreg")
    for filt in ("f150w", "f277w"):
        data.run_in_process("stage3/image3_part1.py", os.path.join(work, f"nircam1_{filt}.json"),
                            "--output_dir", cal)
    crf_md5 = {root: data.md5(os.path.join(cal, f"{root}_a3001_crf.fits")) for root in roots}
    logs = {}
    handler = _Capture()
    logging.getLogger("ceers").addHandler(handler)
    try:
        for root in roots:
            handler.lines = []
            data.run_in_process("stage3/skywcsvar.py", "--image", os.path.join(cal, f"{root}_a3001_crf.fits"))
            logs[root] = "\n".join(handler.lines)
    finally:
        logging.getLogger("ceers").removeHandler(handler)
    return Matched(work, cal, pointing.rate_dir, roots, logs, crf_md5)


class _Capture(logging.Handler):
    """Keeps the messages of the ``ceers`` loggers."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@dataclasses.dataclass
class Mosaics:
    """Mosaics of the pointing on one derived grid: ``i2d[filter]`` (F150W, F277W), the grid
    file, ``scene[filter]``: the noiseless source light of the same exposures drizzled the same
    way (sky, wisp and striping left out), and the stderr of the runs."""

    dir: str
    grid: str
    i2d: dict
    scene: dict
    logs: dict


@pytest.fixture(scope="session")
def mosaics(matched):
    """make_mosaic.py on both filters' _final associations, on the window of the DR0.5 frame
    that covers the F150W images (--cover, saved with --save_grid; the F277W images reach
    beyond it and are cut at its edges, as at the edge of a DR0.5 grid); then the
    noiseless scene of each exposure, put in a copy of its _match file (so that it carries
    the same WCS, flags and weights), drizzled onto the same grid."""
    out = os.path.join(matched.dir, "mosaics")
    grid = os.path.join(matched.dir, "grid_nircam1_test.json")
    filters = ("f150w", "f277w")
    i2d = {f: os.path.join(out, f"ceers_nircam1_{f}_i2d.fits") for f in filters}
    scene = {f: os.path.join(matched.dir, "scene", f"ceers_nircam1_{f}_scene_i2d.fits") for f in filters}

    def final(filt):
        return os.path.join(matched.dir, f"nircam1_{filt}_final.json")

    def drizzle(asn, folder, *grid_args):
        return data.run_script("stage3/make_mosaic.py", asn, *grid_args, "--output_dir", folder).stderr

    # The F150W mosaic sets the grid; the other three drizzles then run two at a time.
    logs = {"f150w": drizzle(final("f150w"), out, "--cover", final("f150w"), "--save_grid", grid)}
    jobs = [(final("f277w"), out)] + [(data.scene_association(matched, f), os.path.dirname(scene[f]))
                                      for f in filters]
    logs["f277w"] = data.in_parallel(lambda job: drizzle(*job, "--grid", grid), jobs)[0]
    return Mosaics(out, grid, i2d, scene, logs)
