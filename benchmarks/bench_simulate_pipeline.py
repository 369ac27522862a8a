"""Benchmark: simulate one full-frame exposure, then calwebb_detector1 and calwebb_image2.

Run by hand (not part of the test suite):

    python benchmarks/bench_simulate_pipeline.py [--ngroups 9] [--budget 60]

Uses the synthetic CRDS context in ``$CEERS_OFFLINE_DIR`` (default
``.offline/`` at the repository root; built first, untimed, if missing).
Prints each phase's wall time and exits non-zero if the total exceeds the
budget in seconds.
"""

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ngroups", type=int, default=9, help="groups (CEERS used MEDIUM8, 9)")
    parser.add_argument("--detector", default="NRCA3")
    parser.add_argument("--filter", default="F150W")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds allowed in total")
    args = parser.parse_args()

    from ceers_nircam.offline.cli import build, environment

    offline_dir = os.environ.get("CEERS_OFFLINE_DIR", os.path.join(ROOT, ".offline"))
    os.environ.update(environment(offline_dir))
    build(offline_dir, demo=False)

    t0 = time.perf_counter()
    from jwst.pipeline import Detector1Pipeline, Image2Pipeline

    from ceers_nircam.offline import scene
    from ceers_nircam.offline.simulate import SimulationConfig, plan_exposures, simulate_exposure

    t_import = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config = SimulationConfig(detectors=(args.detector,), filters=(args.filter,), ndithers=1,
                                  ngroups=args.ngroups)
        exp = plan_exposures(config)[0]
        catalog = scene.generate_catalog(config.ra, config.dec, seed=config.seed)
        uncal, _ = simulate_exposure(config, exp, catalog, tmp, os.path.join(tmp, "wisps"))
        t_sim = time.perf_counter()
        Detector1Pipeline.call(uncal, output_dir=tmp, save_results=True)
        t_det1 = time.perf_counter()
        Image2Pipeline.call(uncal.replace("_uncal", "_rate"), output_dir=tmp, save_results=True)
        t_im2 = time.perf_counter()
    total = t_im2 - t0
    print(f"imports      {t_import - t0:6.1f} s")
    print(f"simulate     {t_sim - t_import:6.1f} s   (full frame, {args.ngroups} groups)")
    print(f"detector1    {t_det1 - t_sim:6.1f} s")
    print(f"image2       {t_im2 - t_det1:6.1f} s")
    print(f"total        {total:6.1f} s   (budget {args.budget:.0f} s)")
    return 0 if total <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
