"""The simulated pointing the stage-3 tests share, and measurements against its truth.

One CEERS-like visit (observation 1, visit 1): NRCA1 and NRCA3 in F150W and
NRCALONG in F277W, three dithers, full frames, the simulator's flight-like
defaults and a visit pointing error of (0.25, -0.35) arcsec written into the
headers. Detector1 is the plain jwst pipeline; Image2 is our stage2/image2.py.

Simulation and Detector1 take most of the time (about 40 s per exposure on
two shared cores), so their products (rate and truth files and the reference
catalog) are kept in ``<offline dir>/testdata/<key>``, where the key is a
hash of the configuration, the simulator's source and the jwst and stcal
versions: a change to any of them makes a new set. ``CEERS_TEST_CACHE=0``
turns the cache off. Image2 and everything after it always run afresh.
"""

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POINTING_ERROR = (0.25, -0.35)
VISIT = "jw01345001001"


def config():
    from ceers_nircam.offline.simulate import SimulationConfig

    return SimulationConfig(detectors=("NRCA1", "NRCA3", "NRCALONG"), filters=("F150W", "F277W"),
                            ndithers=3, pointing_error=POINTING_ERROR)


def cache_key(cfg):
    import jwst
    import stcal

    digest = hashlib.sha1(repr(dataclasses.asdict(cfg)).encode())
    digest.update(f"{jwst.__version__} {stcal.__version__}".encode())
    offline = os.path.join(ROOT, "ceers_nircam", "offline")
    for path in sorted(glob.glob(os.path.join(offline, "*.py"))):
        with open(path, "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()[:12]


def _simulate_and_detector1(cfg, directory):
    from jwst.pipeline import Detector1Pipeline

    from ceers_nircam.cli import quiet_loggers
    from ceers_nircam.offline.simulate import simulate

    uncals = simulate(cfg, directory)
    for uncal in uncals:
        with quiet_loggers("stpipe", "jwst", "stcal", "CRDS"):
            Detector1Pipeline.call(uncal, output_dir=directory, save_results=True)
        os.remove(uncal)
    for pattern in ("*_trapsfilled.fits", "*_rateints.fits"):
        for path in glob.glob(os.path.join(directory, pattern)):
            os.remove(path)


def rate_files(offline_dir):
    """The directory holding the simulated pointing's rate, truth and catalog files (made once)."""
    cfg = config()
    use_cache = os.environ.get("CEERS_TEST_CACHE", "1") != "0"
    base = os.path.join(offline_dir, "testdata")
    target = os.path.join(base, f"stage3-{cache_key(cfg)}")
    if use_cache and os.path.exists(os.path.join(target, "complete")):
        return target
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".stage3-", dir=base)
    _simulate_and_detector1(cfg, work)
    with open(os.path.join(work, "complete"), "w") as fh:
        json.dump({"config": repr(cfg)}, fh)
    if not use_cache:
        return work
    if os.path.exists(target):
        shutil.rmtree(target)
    os.replace(work, target)
    return target


def run_script(script, *args, check=True):
    """Run one of our scripts as a user would; return the CompletedProcess."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)],
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


# --------------------------------------------------------------------------
# measurements against the truth


def truth_sources(truth, shape=(2048, 2048), margin=10):
    """Truth sources on the detector (true pixel positions), brighter than 27 mag."""
    src = truth["sources"]
    x, y = np.asarray(src["x"]), np.asarray(src["y"])
    ny, nx = shape
    keep = (x > margin) & (x < nx - 1 - margin) & (y > margin) & (y < ny - 1 - margin)
    return src[keep & (np.asarray(src["mag"]) < 27.0)]


def sky_offsets_mas(wcs, sources):
    """(dRA cos Dec, dDec) in mas of where a WCS puts the true pixel positions, minus the truth."""
    ra, dec = wcs(np.asarray(sources["x"], float), np.asarray(sources["y"], float))
    cosd = np.cos(np.deg2rad(np.asarray(sources["dec"], float)))
    return ((ra - np.asarray(sources["ra"])) * cosd * 3.6e6,
            (dec - np.asarray(sources["dec"])) * 3.6e6)


def detected(sources, catalog, radius=1.0):
    """Rows of ``sources`` with a catalog source within ``radius`` pixels (matched sources)."""
    from scipy.spatial import cKDTree

    if len(catalog) == 0:
        return sources[:0]
    tree = cKDTree(np.column_stack([catalog["x"], catalog["y"]]))
    dist, _ = tree.query(np.column_stack([sources["x"], sources["y"]]), distance_upper_bound=radius)
    return sources[np.isfinite(dist)]


def pairwise_rms_mas(positions):
    """RMS (mas) of the sky-position differences of the same sources between dithers.

    ``positions`` maps a dither to {source id: (ra, dec)} in degrees.
    """
    keys = sorted(positions)
    diffs = []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            common = sorted(set(positions[a]) & set(positions[b]))
            if not common:
                continue
            pa = np.array([positions[a][k] for k in common])
            pb = np.array([positions[b][k] for k in common])
            cosd = np.cos(np.deg2rad(pa[:, 1]))
            diffs.append(np.column_stack([(pa[:, 0] - pb[:, 0]) * cosd, pa[:, 1] - pb[:, 1]]) * 3.6e6)
    d = np.concatenate(diffs)
    return float(np.sqrt(np.mean(np.sum(d**2, axis=1))))
