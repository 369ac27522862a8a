"""Astrometry benchmarks on the simulated pointing of the stage-3 tests.

- source catalog of one full-frame cal image (photutils detection, deblending
  and windowed centroids; target <= 2 s), best of --repeat runs, for each of
  the six F150W images and the three F277W ones;
- TweakReg of one visit and filter (relative and absolute fits of every
  detector, catalogs included), for F150W (two detectors, six images) and
  F277W (one detector, three images).

Run from the repository root: ``python benchmarks/bench_astrometry.py``. The
rate files come from the stage-3 test cache (``<offline dir>/testdata``,
simulated and calibrated the first time: about ten minutes); their cal files
are made once in --workdir and reused.
"""

import argparse
import glob
import logging
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "stage3"))

from ceers_nircam.offline.cli import build, environment  # noqa: E402

CATALOG_TARGET = 2.0  # seconds per full-frame image


def _cal_files(offline_dir, workdir):
    import stage3_data

    rate_dir = stage3_data.rate_files(offline_dir)
    os.makedirs(workdir, exist_ok=True)
    for rate in sorted(glob.glob(os.path.join(rate_dir, "*_rate.fits"))):
        cal = os.path.join(workdir, os.path.basename(rate).replace("_rate", "_cal"))
        if not os.path.exists(cal):
            stage3_data.run_script("stage2/image2.py", rate, "--output_dir", workdir)
    return rate_dir, sorted(glob.glob(os.path.join(workdir, "*_cal.fits")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "ceers_bench_astrometry"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    offline_dir = os.environ.get("CEERS_OFFLINE_DIR", os.path.join(ROOT, ".offline"))
    os.environ.update(environment(offline_dir))
    build(offline_dir, demo=False)
    rate_dir, cals = _cal_files(offline_dir, args.workdir)

    from astropy.io import fits
    from stdatamodels.jwst import datamodels

    import stage3_data
    from ceers_nircam.steps import astrometry, sourcecat

    logging.disable(logging.WARNING)
    print("source catalog per full-frame image (best of %d):" % args.repeat)
    worst = 0.0
    for path in cals:
        with datamodels.ImageModel(path) as model:
            mask = sourcecat.bad_pixel_mask(model.dq)
            best, n = np.inf, 0
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                cat = sourcecat.find_sources(model.data, model.err, mask, sourcecat.DetectionParams())
                best = min(best, time.perf_counter() - t0)
                n = len(cat)
        worst = max(worst, best)
        print(f"  {os.path.basename(path):45s} {best:5.2f} s  {n:5d} sources")
    print(f"  slowest {worst:.2f} s (target <= {CATALOG_TARGET:.1f} s)")

    print("TweakReg of one visit and filter (catalogs, relative and absolute fits):")
    refcat = os.path.join(rate_dir, "reference_catalog.ecsv")
    for filt in ("F150W", "F277W"):
        images = [p for p in cals if fits.getheader(p)["FILTER"] == filt]
        with tempfile.TemporaryDirectory() as tmp:
            params = astrometry.read_config(stage3_data.write_config(tmp, filt), stage3_data.VISIT, filt)
            t0 = time.perf_counter()
            _, rows, _ = astrometry.align_visit(images, params, refcat, tmp)
            total = time.perf_counter() - t0
        fits_done = sum(r["status"] == "SUCCESS" for r in rows)
        print(f"  {filt}: {len(images)} images, {fits_done} fits, {total:5.1f} s")
    return 0 if worst <= CATALOG_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
