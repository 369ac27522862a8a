"""Benchmark: compute each filter's effective PSF from scratch and print the time it takes.

Run by hand (not part of the test suite):

    python benchmarks/bench_psf.py [F200W F444W ...] [--budget 15]

Nothing is cached: every filter is computed in memory. For a one-core figure
set OMP_NUM_THREADS=1 (the matrix products otherwise use every core). Prints
one line per filter with the PSF's measures and exits non-zero if any filter
took longer than the budget in seconds.
"""

import argparse
import os
import sys
import time

from ceers_nircam.offline import psf


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("filters", nargs="*", default=list(psf.BANDPASS))
    parser.add_argument("--budget", type=float, default=15.0, help="seconds allowed per filter")
    args = parser.parse_args()

    os.environ.pop(psf.CACHE_ENV, None)  # compute, never read a cache
    psf.strehl(2.0)  # the one-off wavefront scaling, shared by all filters: untimed
    print(f"Strehl ratio at 2 um: {psf.strehl(2.0):.3f}")
    print("filter  waves pupil  time s  half fraction  FWHM\"  EE(0.8\")")
    slow = []
    for filt in args.filters:
        t0 = time.perf_counter()
        epsf = psf.effective_psf(filt, cache_dir=None)
        elapsed = time.perf_counter() - t0
        print(f"{filt:7} {len(psf.wavelengths(filt)[0]):5d} {psf.pupil_samples(filt):5d} "
              f"{elapsed:7.2f} {epsf.halfsize:5d} {epsf.fraction:8.5f} {epsf.fwhm():6.4f} "
              f"{epsf.encircled_energy(0.8):8.4f}", flush=True)
        if elapsed > args.budget:
            slow.append(filt)
    if slow:
        print(f"over the {args.budget:.0f} s budget: {', '.join(slow)}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
