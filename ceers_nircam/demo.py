"""The main job on the built-in demo data: ``python -m ceers_nircam.demo OUTDIR``.

Builds the offline environment (synthetic CRDS context, wisp templates and a
simulated CEERS-like visit), runs the reduction steps on the simulated
exposures exactly as a user would from the command line, and writes a
validation report comparing the products with the injected truth.
"""

import glob
import os
import subprocess
import sys

from .cli import CeersError, get_logger, make_parser, progress, run, setup_logging
from .offline import cli as offline
from .offline.simulate import read_truth
from .offline.validate import check_cal, format_report

log = get_logger("demo")


def _strun(args, env):
    """Run one ``strun`` command; raise with its last error line if it fails."""
    proc = subprocess.run(["strun", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CeersError(f"strun {' '.join(args)} failed: {tail}")


def _main(argv):
    parser = make_parser("Run the reduction on the built-in demo data and validate it.",
                         prog="python -m ceers_nircam.demo")
    parser.add_argument("outdir", nargs="?", default="demo_output")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    outdir = os.path.abspath(args.outdir)
    offline_dir = os.path.join(outdir, "offline")
    offline.build(offline_dir)
    env = dict(os.environ, **offline.environment(offline_dir))
    uncal_dir = os.path.join(offline_dir, "demo", "uncals")
    calibrated = os.path.join(outdir, "calibrated")
    os.makedirs(calibrated, exist_ok=True)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")

    uncals = sorted(glob.glob(os.path.join(uncal_dir, "*_uncal.fits")))
    for uncal in progress(uncals, log, "Detector1 + Image2", every=1):
        rate = os.path.join(calibrated, os.path.basename(uncal).replace("_uncal", "_rate"))
        cal = rate.replace("_rate", "_cal")
        if not os.path.exists(rate):
            _strun(["calwebb_detector1", uncal, f"--output_dir={calibrated}"], env)
        if not os.path.exists(cal):
            _strun(["calwebb_image2", rate, f"--output_dir={calibrated}",
                    "--steps.resample.skip=True"], env)

    rows = []
    for uncal in uncals:
        truth = read_truth(uncal.replace("_uncal.fits", "_truth.fits"))
        cal = os.path.join(calibrated, os.path.basename(uncal).replace("_uncal", "_cal"))
        rows.append(check_cal(cal, truth))
    report = format_report(rows, "ceers-nircam demo: calibrated images against injected truth", notes=(
        "Products of calwebb_detector1 + calwebb_image2 alone: the 1/f striping and the wisps "
        "are still in them (the sky is measured outside the wisp regions), and the header WCS "
        "carries the simulated pointing error until stage 3 aligns it. Fluxes are aperture "
        "photometry of isolated sources against the same aperture on the noiseless truth.",))
    path = os.path.join(outdir, "validation_report.md")
    with open(path, "w") as fh:
        fh.write(report)
    print(report)
    log.info("Validation report written to %s", path)


def main(argv=None):
    sys.exit(run(_main, argv))


if __name__ == "__main__":
    main()
