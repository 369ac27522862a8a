"""The simulated pointing the stage-3 tests share, and measurements against its truth.

One CEERS-like visit (observation 1, visit 1): NRCA1 and NRCA3 in F150W and
NRCALONG in F277W, three dithers, full frames, the simulator's flight-like
defaults and a visit pointing error of (0.25, -0.35) arcsec written into the
headers. Image2 is our stage2/image2.py.

The rate files are made as CEERS made them, by the project's stage-1 scripts
(Detector1 with snowball expansion, wisp subtraction, 1/f striping removal).
Simulation and stage 1 take most of the time (about a minute and a half per
exposure; two exposures are made at once, one per core), so their products (rate, truth and
noiseless-rate files and the reference catalog) are kept in
``<offline dir>/testdata/<key>``, where the key is a hash of the
configuration, the jwst and stcal versions and the source of the simulator
and of stage 1 (:data:`RECIPE`): a change to any of them makes a new set.
``CEERS_TEST_CACHE=0`` turns the cache off. Image2 and everything after it
always run afresh.
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

# Exposures simulated and reduced at once: each is one process, and the machine has two cores.
WORKERS = 2
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POINTING_ERROR = (0.25, -0.35)
VISIT = "jw01345001001"

# The DR0.5 values of the spec (pointing 1, F150W); F277W fits rotation and scale.
CONFIG = """[{visit}]
# source finding parameters
detect_thresh  = 4
detect_minarea = 16
deblend        = 4
kernel_fwhm    = 1.5
kernel_nsigma  = 5
snr_threshold  = 2.5
bkg_boxsize    = 100
# Relative alignment:
minobj         = 20
searchrad      = 1.0
separation     = 0.2
tolerance      = 0.1
nclip          = 1
sigma          = 0.6
# Absolute alignment:
abs_minobj     = 20
abs_searchrad  = 1.0
abs_separation = 0.6
abs_tolerance  = 0.4
abs_nclip      = 1
abs_sigma      = 0.8
abs_fitgeom    = {fitgeom}
"""


def write_config(directory, filt, visit=VISIT):
    fitgeom = "rscale" if filt == "F277W" else "rshift"
    path = os.path.join(directory, f"{filt.lower()}.cfg")
    with open(path, "w") as fh:
        fh.write(CONFIG.format(visit=visit, fitgeom=fitgeom))
    return path


def config():
    from ceers_nircam.offline.simulate import SimulationConfig

    return SimulationConfig(detectors=("NRCA1", "NRCA3", "NRCALONG"), filters=("F150W", "F277W"),
                            ndithers=3, pointing_error=POINTING_ERROR)


def cache_key(cfg):
    import jwst
    import stcal

    digest = hashlib.sha1(repr(dataclasses.asdict(cfg)).encode())
    digest.update(f"{jwst.__version__} {stcal.__version__}".encode())
    for pattern in RECIPE:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            if os.path.relpath(path, ROOT) in NOT_RECIPE:
                continue
            with open(path, "rb") as fh:
                digest.update(fh.read())
    return digest.hexdigest()[:12]


def simulate_with_ideals(cfg, directory):
    """What ``simulate`` writes, plus each exposure's noiseless rate (``<root>_ideal.fits``);
    return the uncal paths."""
    from ceers_nircam.offline.simulate import simulate

    return simulate(cfg, directory, save_ideal=True, workers=WORKERS)


# What makes the rate files: the simulator and stage 1 (its scripts and the step code under them).
RECIPE = ["ceers_nircam/offline/*.py", "stage1/*.py", "ceers_nircam/steps/detector1.py",
          "ceers_nircam/steps/snowballs.py", "ceers_nircam/steps/wisps.py",
          "ceers_nircam/steps/striping.py", "ceers_nircam/masking.py", "ceers_nircam/background.py",
          "ceers_nircam/reffiles.py", "ceers_nircam/nircam.py"]
# Offline modules that only judge or report results: they make none of the data.
NOT_RECIPE = ("ceers_nircam/offline/validate.py", "ceers_nircam/offline/demo_report.py")


def stage1(uncal, directory, templates):
    """Stage 1 as CEERS ran it, with the project's scripts: Detector1 with snowball expansion,
    wisp subtraction (fitted; other detectors pass), 1/f striping removal (threshold 0.8 short
    wave, 0.15 long wave, as DR0.5). Keeps the rate file and its 1/f source mask."""
    root = os.path.basename(uncal)[: -len("_uncal.fits")]
    rate = os.path.join(directory, f"{root}_rate.fits")
    run_script("stage1/snowball_wrapper.py", uncal, "--output_dir", directory, "--delete_interim")
    run_script("stage1/wispsub.py", rate, "--fit", "--template_dir", templates)
    thresh = "0.15" if "long" in root else "0.8"
    run_script("stage1/remstriping.py", rate, "--thresh", thresh)
    for suffix in ("_rate_pre1f.fits", "_rate_prewisp.fits", "_ramp.fits"):
        if os.path.exists(os.path.join(directory, root + suffix)):
            os.remove(os.path.join(directory, root + suffix))


def _simulate_and_stage1(cfg, directory):
    def one(uncal):
        stage1(uncal, directory, os.path.join(directory, "wisp_templates"))
        os.remove(uncal)

    in_parallel(one, simulate_with_ideals(cfg, directory))


def in_parallel(function, items):
    """``function`` on every item, :data:`WORKERS` at a time (each runs scripts in processes of
    their own, so threads suffice); the results in order; the first error is raised."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(function, items))


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
    _simulate_and_stage1(cfg, work)
    with open(os.path.join(work, "complete"), "w") as fh:
        json.dump({"config": repr(cfg)}, fh)
    if not use_cache:
        return work
    if os.path.exists(target):
        shutil.rmtree(target)
    os.replace(work, target)
    for stale in glob.glob(os.path.join(base, "stage3-*")):  # sets made for older code
        if stale != target:
            shutil.rmtree(stale, ignore_errors=True)
    return target


def run_in_process(script, *args):
    """Run one of our scripts in this process (its ``main``), saving the start-up of a new
    interpreter with jwst; raise if it fails."""
    import importlib.util

    name = "script_" + script.replace("/", "_").replace(".py", "")
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status = module.main([str(a) for a in args])
    if status != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} failed ({status})")


def md5(path):
    """Hex digest of a file's bytes."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_script(script, *args, check=True):
    """Run one of our scripts as a user would; return the CompletedProcess."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)],
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def scene_association(matched, filt):
    """A copy of each _match file of a filter with its SCI replaced by the noiseless scene
    (:func:`ceers_nircam.offline.validate.write_scene_copy`), and an association of them
    (product ``..._scene``); its path."""
    from astropy.io import fits

    from ceers_nircam.offline import validate
    from ceers_nircam.steps import associations

    product, members = associations.members(os.path.join(matched.dir, f"nircam1_{filt}_final.json"))
    roots = []
    for path in members:
        root = os.path.basename(path).split("_a3001_")[0]
        ideal = fits.getdata(os.path.join(matched.rate_dir, f"{root}_ideal.fits"))
        validate.write_scene_copy(path, load_truth(matched.rate_dir, root), ideal,
                                  os.path.join(os.path.dirname(path), f"{root}_a3001_scene.fits"))
        roots.append(root)
    asn = associations.make_association(roots, f"{product}_scene", "calibrated", "a3001_scene")
    out = os.path.join(matched.dir, f"nircam1_{filt}_scene.json")
    with open(out, "w") as fh:
        fh.write(associations.association_json(asn))
    return out


def scene_cal(root, rate_dir, model):
    """The noiseless source light of an exposure in cal units (``validate.scene_cal``)."""
    from astropy.io import fits

    from ceers_nircam.offline import validate

    ideal = fits.getdata(os.path.join(rate_dir, f"{root}_ideal.fits"))
    return validate.scene_cal(load_truth(rate_dir, root), ideal, model)


def load_truth(rate_dir, root):
    """The truth file of an exposure (``read_truth``)."""
    from ceers_nircam.offline.simulate import read_truth

    return read_truth(os.path.join(rate_dir, f"{root}_truth.fits"))
