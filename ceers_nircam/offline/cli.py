"""``ceers-offline``: build and describe the offline environment.

``ceers-offline build DIR`` writes, under DIR:

- ``crds_cache/``: the synthetic CRDS context (see :mod:`.references`);
- ``wisp_templates/``: wisp templates for every wisp detector and filter;
- ``demo/uncals/``: a small simulated CEERS-like visit with its truth files;
- ``ceers_env.sh``: the environment settings; ``source`` it and every step
  script, ``strun`` and the simulator find the references as they would a
  real CRDS setup.

``ceers-offline env DIR`` prints the same settings.
"""

import os
import shlex
import sys

from ..cli import CeersError, get_logger, make_parser, run, setup_logging
from . import artifacts, references
from . import instrument as inst
from .simulate import SimulationConfig, simulate

log = get_logger("offline")

DEMO = dict(detectors=("NRCA3", "NRCB4", "NRCALONG"), filters=("F150W", "F277W"), ngroups=6)
ENV_FILE = "ceers_env.sh"
TEMPLATE_ENV = "CEERS_WISP_TEMPLATES"
PSF_ENV = "CEERS_PSF_CACHE"  # the simulator's computed PSFs, one file per filter


def environment(directory):
    """Environment variables of an offline environment built in ``directory``."""
    directory = os.path.abspath(directory)
    env = references.crds_environment(os.path.join(directory, "crds_cache"))
    env[TEMPLATE_ENV] = os.path.join(directory, "wisp_templates")
    env[PSF_ENV] = os.path.join(directory, "psf_cache")
    return env


def write_env_file(directory):
    """Write ``ceers_env.sh`` with export lines; return its path."""
    path = os.path.join(directory, ENV_FILE)
    with open(path, "w") as fh:
        fh.write("# Offline CEERS NIRCam environment: source this file.\n")
        for key, value in environment(directory).items():
            fh.write(f"export {key}={shlex.quote(value)}\n")
    return path


def build(directory, demo=True, seed=1345, force=False):
    """Build the reference cache, the wisp templates and (optionally) the demo data."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    env = environment(directory)
    references.build_crds_cache(env["CRDS_PATH"], force=force)
    artifacts.write_wisp_templates(env[TEMPLATE_ENV])
    os.environ.update(env)
    if demo:
        uncals = os.path.join(directory, "demo", "uncals")
        done = os.path.join(uncals, "simulation.json")
        if force or not os.path.exists(done):
            simulate(SimulationConfig(seed=seed, **DEMO), uncals, env[TEMPLATE_ENV])
        else:
            log.info("Demo exposures in %s are present", uncals)
    return write_env_file(directory)


def _main(argv):
    parser = make_parser("Build or describe the offline CEERS NIRCam environment.",
                         prog="ceers-offline")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build reference cache, wisp templates and demo data")
    b.add_argument("directory")
    b.add_argument("--no-demo", action="store_true", help="skip the simulated demo visit")
    b.add_argument("--seed", type=int, default=1345, help="seed of the demo simulation")
    b.add_argument("--force", action="store_true", help="rebuild even if present")
    e = sub.add_parser("env", help="print the environment settings of a built directory")
    e.add_argument("directory")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "build":
        path = build(args.directory, demo=not args.no_demo, seed=args.seed, force=args.force)
        log.info("Offline environment ready: source %s", path)
        print(f"source {shlex.quote(path)}")
    else:
        if not references.cache_is_current(os.path.join(args.directory, "crds_cache"),
                                           inst.DETECTORS, inst.FILTERS):
            raise CeersError(f"{args.directory}: no offline environment built here "
                             "(run 'ceers-offline build DIR')")
        for key, value in environment(args.directory).items():
            print(f"export {key}={shlex.quote(value)}")


def main(argv=None):
    sys.exit(run(_main, argv))


if __name__ == "__main__":
    main()
