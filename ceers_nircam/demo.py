"""The main job on the built-in demo data: ``python -m ceers_nircam.demo OUTDIR``.

Builds the offline environment, simulates a small CEERS-like pointing on the
simulator's realistic defaults, writes the batch files of every stage with
the generator, runs them through the local runner (the same scripts a user
runs), and ends with background-subtracted mosaics and a validation report
(``report.html`` and ``summary.json``) that compares every product with the
injected truth. Run it again and it resumes: only what is missing is redone.
"""

import dataclasses
import os
import shlex
import shutil
import sys
import time

from . import names
from .batch import accounting, runner, stages
from .batch.runfile import Line, write_order, write_run_file
from .cli import (CeersError, add_options, get_logger, make_parser, option, params_from_args, run,
                  setup_logging)
from .fitsio import atomic_path
from .nircam import filter_channel
from .offline import cli as offline
from .offline.simulate import SimulationConfig, plan_exposures

log = get_logger("demo")

FULL = {"detectors": ("NRCA1", "NRCA3", "NRCA4", "NRCALONG"),
        "filters": ("F150W", "F200W", "F277W", "F444W")}
REDUCED = {"detectors": ("NRCA3", "NRCALONG"), "filters": ("F150W", "F277W")}
POINTING = "nircam1"
# TweakReg settings of the CEERS configs (one section per visit); the absolute fit
# allows a rotation in short wave and a rotation and scale in long wave.
TWEAKREG = {"detect_thresh": 4, "detect_minarea": 16, "deblend": 4, "kernel_fwhm": 1.5,
            "kernel_nsigma": 5, "snr_threshold": 2.5, "bkg_boxsize": 100, "minobj": 20,
            "searchrad": 1.0, "separation": 0.2, "tolerance": 0.1, "nclip": 1, "sigma": 0.6,
            "abs_minobj": 20, "abs_searchrad": 1.0, "abs_separation": 0.6, "abs_tolerance": 0.4,
            "abs_nclip": 1, "abs_sigma": 0.8}


@dataclasses.dataclass(frozen=True)
class DemoParams:
    """Options of the demo."""

    workers: int = option(2, "lines run at once (the machine's cores)")
    reduced: bool = option(False, "a smaller pointing (NRCA3 and NRCALONG in F150W and F277W), "
                                  "as the test suite runs it")
    ngroups: int = option(9, "groups per exposure (CEERS: 9)")
    seed: int = option(1345, "seed of the simulation")


def layout(params):
    """Detectors and filters of the demo pointing."""
    return REDUCED if params.reduced else FULL


def simulation_lines(outdir, params, template_dir):
    """One ``ceers-simulate`` line per detector, each into ``uncals/<detector>/``.

    Every line draws the same scene and the same visit pointing error (both
    follow from the seed), so the detectors make one consistent pointing.
    """
    plan = layout(params)
    lines = []
    for det in plan["detectors"]:
        filters = [f for f in plan["filters"]
                   if filter_channel(f) == ("LONG" if det.endswith("LONG") else "SHORT")]
        config = SimulationConfig(detectors=(det,), filters=tuple(filters), ngroups=params.ngroups,
                                  seed=params.seed, pointing=POINTING)
        folder = os.path.join("uncals", det.lower())
        outputs = tuple(os.path.join(folder, f"{e.rootname}_{kind}.fits")
                        for e in plan_exposures(config) for kind in ("uncal", "truth", "ideal"))
        command = shlex.join(["ceers-simulate", folder, "--detectors", det, "--filters",
                              ",".join(filters), "--ngroups", str(params.ngroups), "--seed",
                              str(params.seed), "--pointing", POINTING, "--template-dir",
                              template_dir, "--save-ideal"])
        lines.append(Line(command, key=det.lower(), outputs=outputs))
    return lines


def write_tweakreg_configs(outdir, visit, filters):
    """The astrometry settings per filter, in the CEERS INI format (one section per visit)."""
    for filt in filters:
        path = os.path.join(outdir, "tweakreg_cfgs", POINTING, f"{filt.lower()}.cfg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        geometry = "rshift" if filter_channel(filt) == "SHORT" else "rscale"
        text = "\n".join([f"[{visit}]", *(f"{k} = {v}" for k, v in TWEAKREG.items()),
                          f"abs_fitgeom = {geometry}", ""])
        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            fh.write(text)


def _simulated(outdir):
    """(root, filter) of every simulated exposure, from the truth files."""
    from astropy.io import fits

    found = []
    for folder, _, files in sorted(os.walk(os.path.join(outdir, "uncals"))):
        for name in sorted(files):
            if name.endswith("_truth.fits"):
                header = fits.getheader(os.path.join(folder, name))
                found.append((name[: -len("_truth.fits")], header["FILTER"]))
    return found


def _check(results):
    """Raise with the stage that left lines undone (the runner has logged which)."""
    for runfile, states in results:
        if not accounting.all_done(states):
            raise CeersError(f"stage {runfile.stage} has lines not done: see "
                             f"{os.path.join(os.path.dirname(runfile.path), 'logs', runfile.stage)} "
                             "and run the demo again to resume")


def reduce_pointing(outdir, params):
    """Simulate (if needed), write the batch files and run every stage; return the batch folder."""
    offline_dir = os.path.join(outdir, "offline")
    offline.build(offline_dir, demo=False)
    env = offline.environment(offline_dir)
    os.environ.update(env)
    bindir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")

    batch_dir = os.path.join(outdir, "batch")
    sim_dir = os.path.join(batch_dir, "simulation")
    sim_run = os.path.join(sim_dir, "simulate.run")
    write_run_file(sim_run, "simulate", simulation_lines(outdir, params, env["CEERS_WISP_TEMPLATES"]),
                   outdir)
    write_order(sim_dir, ["simulate.run"])
    log.info("Simulating the demo pointing (%s)", ", ".join(layout(params)["detectors"]))
    _check(runner.run_chain([sim_dir], params.workers, workdir=outdir))

    exposures = _simulated(outdir)
    refcat = os.path.join(outdir, "reference_catalog.ecsv")
    if not os.path.exists(refcat):
        first = os.path.join(outdir, "uncals", layout(params)["detectors"][0].lower(),
                             "reference_catalog.ecsv")
        shutil.copyfile(first, refcat)
    visit = exposures[0][0].split("_")[0]
    write_tweakreg_configs(outdir, visit, layout(params)["filters"])
    # Mosaics on the window of the pointing's DR0.5 grid that covers the images (every
    # filter the same window), so that the demo does not drizzle onto 10600 x 4800 pixels
    # of which it fills a third.
    cover = " ".join(names.association(POINTING, f, final=True) for f in layout(params)["filters"])
    settings = stages.BatchSettings(
        uncal_dir="uncals", batch_dir=batch_dir, workdir=outdir, python=sys.executable,
        alignment="astrometry", refcat="reference_catalog.ecsv", save_results=True,
        delete_interim=True,
        extra=("detector1_and_snowballs=--save_mask", "wisp_subtraction=--plot",
               "remstriping=--plot", "astrometry=--catalog_dir catalogs", "skysub_varscale=--plot",
               f"make_mosaics=--cover {cover}"))
    pointing_dir = os.path.dirname(stages.generate(POINTING, settings)[0])
    _check(runner.run_chain([pointing_dir], params.workers, workdir=outdir))
    return pointing_dir


def _main(argv):
    parser = make_parser("Reduce the built-in demo pointing and validate it against its truth.",
                         prog="python -m ceers_nircam.demo")
    parser.add_argument("outdir", nargs="?", default="demo_output")
    args = add_options(parser, DemoParams).parse_args(argv)
    setup_logging(args.verbose)
    params = params_from_args(DemoParams, args)
    outdir = os.path.abspath(args.outdir)
    os.makedirs(outdir, exist_ok=True)
    t0 = time.monotonic()
    reduce_pointing(outdir, params)
    from .offline import demo_report

    html, summary = demo_report.write(outdir, layout(params), params.workers)
    log.info("Report: %s (%s); demo took %s", html, summary, runner.format_seconds(time.monotonic() - t0))


def main(argv=None):
    sys.exit(run(_main, argv))


if __name__ == "__main__":
    main()
