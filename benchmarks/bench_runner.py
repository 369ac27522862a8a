"""Benchmark: the local runner on a 20-line run file, 2 workers against one line after another.

Run by hand (not part of the test suite):

    python benchmarks/bench_runner.py [--lines 20] [--workers 2] [--size 600] [--limit 0.6]

Each line is a real short job: a Python process that makes a noisy image,
smooths it (scipy), measures a sigma-clipped background (astropy) and writes
the result as a FITS file, which the runner then checks as the line's
output. The serial time runs the same lines one after another with plain
``bash -c``, without the runner; the runner is timed with N workers (and,
with ``--single``, with 1).

On a machine shared with other work, a timing means little if other
processes took CPU meanwhile. Each measurement therefore also counts the CPU
time used by others during it (all busy time in /proc/stat minus this
process's and its children's); a measurement in which others used more than
``--quiet`` of the CPUs is repeated, until ``--repeat`` quiet measurements of
each kind are in or ``--patience`` seconds have passed; before each one the
benchmark waits (idly) for the CPUs to be quiet. The best quiet times are
reported. Exits non-zero unless N workers take less than ``--limit``
times the serial time (or if no quiet measurement could be made).
"""

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time

from ceers_nircam.batch import runner
from ceers_nircam.batch.runfile import Line, write_run_file

JOB = """
import sys
import numpy as np
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from scipy import ndimage
size, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(seed)
image = rng.normal(0.3, 0.05, (size, size)).astype(np.float32)
for sigma in (1, 2, 4, 8):
    image = image - 0.5 * ndimage.gaussian_filter(image, sigma)
mean, median, std = sigma_clipped_stats(image, sigma=3.0, maxiters=10)
hdu = fits.PrimaryHDU(image - median)
hdu.header["BKG_STD"] = float(std)
hdu.writeto(out, overwrite=True)
"""


def make_lines(folder, n, size):
    job = os.path.join(folder, "job.py")
    with open(job, "w") as fh:
        fh.write(JOB)
    return [Line(shlex.join([sys.executable, job, str(size), str(i), f"out_{i:02d}.fits"]),
                 key=f"image{i:02d}", outputs=(f"out_{i:02d}.fits",)) for i in range(n)]


def serial(lines, workdir):
    for line in lines:
        subprocess.run(["bash", "-c", line.command], cwd=workdir, check=True)


def with_runner(lines, workdir, workers):
    path = os.path.join(workdir, "batch", "bench.run")
    write_run_file(path, "bench", lines, workdir)
    _, states = runner.run_file(path, workers, force=True, interval=3600)
    failed = [st for st in states if st.state != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} lines did not complete: {failed[0].reason}")


def _busy_seconds():
    """CPU seconds all processes have spent busy since boot (Linux /proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def wait_quiet(share, deadline):
    """Sleep until other processes use less than ``share`` of the CPUs (or the deadline)."""
    while time.monotonic() < deadline:
        busy = _busy_seconds()
        time.sleep(1.0)
        if (_busy_seconds() - busy) / os.cpu_count() < share:
            return


def measure(func, *args):
    """(wall seconds, fraction of the CPUs that other processes used meanwhile)."""
    busy, own, start = _busy_seconds(), _own_seconds(), time.perf_counter()
    func(*args)
    wall = time.perf_counter() - start
    others = (_busy_seconds() - busy) - (_own_seconds() - own)
    return wall, max(0.0, others) / (wall * os.cpu_count())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=600, help="image side in pixels (sets line length)")
    parser.add_argument("--repeat", type=int, default=2, help="quiet measurements wanted of each kind")
    parser.add_argument("--quiet", type=float, default=0.05,
                        help="largest share of the CPUs other processes may use during a measurement")
    parser.add_argument("--patience", type=float, default=1800.0, help="seconds to keep trying")
    parser.add_argument("--limit", type=float, default=0.6, help="largest allowed parallel/serial ratio")
    parser.add_argument("--single", action="store_true", help="also time the runner with 1 worker")
    args = parser.parse_args()
    kinds = {"serial": (serial,), f"runner, {args.workers} workers": (with_runner, args.workers)}
    if args.single:
        kinds["runner, 1 worker"] = (with_runner, 1)
    quiet = {k: [] for k in kinds}
    deadline = time.monotonic() + args.patience
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as work:
        lines = make_lines(work, args.lines, args.size)
        while time.monotonic() < deadline and any(len(v) < args.repeat for v in quiet.values()):
            for kind, (func, *extra) in kinds.items():
                if len(quiet[kind]) >= args.repeat:
                    continue
                wait_quiet(args.quiet, deadline)
                wall, others = measure(func, lines, work, *extra)
                ok = others <= args.quiet
                print(f"{kind:<20} {wall:6.2f} s   others used {others:4.0%} of the CPUs"
                      f"{'' if ok else '  (not counted)'}", flush=True)
                if ok:
                    quiet[kind].append(wall)
    print(f"\n{args.lines} lines, {os.cpu_count()} CPUs; best quiet time of each:")
    for kind, walls in quiet.items():
        print(f"  {kind:<20} {min(walls):6.2f} s" if walls else f"  {kind:<20} no quiet measurement")
    t_serial, t_many = quiet["serial"], quiet[f"runner, {args.workers} workers"]
    if not (t_serial and t_many):
        print("the machine was never quiet long enough: no verdict")
        return 1
    ratio = min(t_many) / min(t_serial)
    print(f"{args.workers} workers / serial = {ratio:.2f} (limit {args.limit})")
    return 0 if ratio < args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
