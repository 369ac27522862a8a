"""Helpers of the stage-1 tests: running the scripts in-process, simulating full frames."""

import dataclasses
import importlib.util
import os
import shutil

import numpy as np
from astropy.table import Table, vstack

from ceers_nircam.nircam import FILTERS
from ceers_nircam.offline.simulate import (SimulationConfig, best_references, exposure_wcs,
                                           load_catalog, plan_exposures, read_truth,
                                           simulate_exposure)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "stage1")
NGROUPS = 9  # CEERS's MEDIUM8 ramps


def load_script(name):
    """A stage-1 script as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"stage1_{name}", os.path.join(SCRIPTS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name, *args):
    """Run a stage-1 script in this process; return its exit status."""
    return load_script(name).main([str(a) for a in args])


@dataclasses.dataclass
class Simulated:
    uncal: str
    truth_path: str
    ideal: np.ndarray
    directory: str

    @property
    def truth(self):
        return read_truth(self.truth_path)

    @property
    def root(self):
        return os.path.basename(self.uncal)[: -len("_uncal.fits")]

    def product(self, suffix, directory=None):
        return os.path.join(directory or os.path.join(self.directory, "calibrated"),
                            f"{self.root}_{suffix}.fits")


def star_grid(config, exp, n=5, mags=(20.0, 22.5), edge=200):
    """A grid of stars placed through the exposure's WCS: isolated point sources to measure."""
    wcs = exposure_wcs(config, exp, best_references(exp)["distortion"])
    pos = np.linspace(edge, 2048 - edge, n)
    x, y = np.meshgrid(pos + 0.31, pos - 0.17)
    ra, dec = wcs(x.ravel(), y.ravel())
    m = n * n
    grid = Table({"id": np.arange(990001, 990001 + m), "ra": ra, "dec": dec,
                  "mag": np.linspace(*mags, m), "kind": ["star"] * m, "r_eff": np.zeros(m),
                  "sersic_n": np.zeros(m), "axis_ratio": np.ones(m), "theta": np.zeros(m)})
    for filt in FILTERS:  # the scene carries a magnitude per filter: flat-spectrum stars
        grid[f"mag_{filt.lower()}"] = grid["mag"]
    return grid


def simulate(directory, detector, filt, seed, stars=False, **overrides):
    """One full-frame exposure on the simulator's defaults (plus ``overrides``)."""
    config = SimulationConfig(detectors=(detector,), filters=(filt,), ndithers=1, ngroups=NGROUPS,
                              seed=seed, **overrides)
    exp = plan_exposures(config)[0]
    catalog = load_catalog(config)
    if stars:
        catalog = vstack([catalog, star_grid(config, exp)])
    uncal, truth, ideal = simulate_exposure(config, exp, catalog, str(directory),
                                            os.environ["CEERS_WISP_TEMPLATES"], keep_ideal=True)
    return Simulated(uncal, truth, ideal, str(directory))


def copy_rate(src, directory, name=None):
    """A fresh copy of a rate file in ``directory`` (a step may then change it)."""
    os.makedirs(directory, exist_ok=True)
    dest = os.path.join(directory, name or os.path.basename(src))
    shutil.copy2(src, dest)
    return dest
