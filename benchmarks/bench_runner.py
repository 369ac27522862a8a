"""Benchmark: the local runner on a 20-line run file, 2 workers against one line after another.

Run by hand (not part of the test suite):

    python benchmarks/bench_runner.py [--lines 20] [--workers 2] [--size 600] [--repeat 2] [--limit 0.6]

Each line is a real short job: a Python process that makes a noisy image,
smooths it (scipy), measures a sigma-clipped background (astropy) and writes
the result as a FITS file, which the runner then checks as the line's
output. The serial time runs the same lines one after another with plain
``bash -c``, without the runner; the runner is then timed with 1 and with N
workers; each timing is the best of ``--repeat`` rounds, since other work on
the machine only ever adds time. On a shared machine each round first waits
(up to ``--wait-idle`` seconds) for the CPUs to be idle, as measured from
/proc/stat. Prints the times and exits non-zero unless N workers take less
than ``--limit`` times the serial time.
"""

import argparse
import os
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


def busy_fraction(seconds=1.0):
    """Fraction of CPU time spent busy over ``seconds`` (Linux /proc/stat; 0 elsewhere)."""
    def sample():
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return 0.0
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_idle(limit, busy=0.1):
    """Wait up to ``limit`` seconds for the CPUs to be idle; return the busy fraction seen last."""
    deadline = time.monotonic() + limit
    while True:
        seen = busy_fraction()
        if seen < busy or time.monotonic() > deadline:
            return seen


def serial(lines, workdir):
    start = time.perf_counter()
    for line in lines:
        subprocess.run(["bash", "-c", line.command], cwd=workdir, check=True)
    return time.perf_counter() - start


def with_runner(lines, workdir, workers):
    path = os.path.join(workdir, "batch", "bench.run")
    write_run_file(path, "bench", lines, workdir)
    start = time.perf_counter()
    _, states = runner.run_file(path, workers, force=True, interval=3600)
    elapsed = time.perf_counter() - start
    failed = [st for st in states if st.state != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} lines did not complete: {failed[0].reason}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=600, help="image side in pixels (sets line length)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best time of each is kept")
    parser.add_argument("--wait-idle", type=float, default=300.0,
                        help="seconds to wait, before each round, for other work on the CPUs to stop")
    parser.add_argument("--limit", type=float, default=0.6, help="largest allowed parallel/serial ratio")
    args = parser.parse_args()
    times = {"serial": [], "one": [], "many": []}
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as work:
        lines = make_lines(work, args.lines, args.size)
        for round_ in range(1, args.repeat + 1):
            busy = wait_idle(args.wait_idle)
            times["serial"].append(serial(lines, work))
            times["many"].append(with_runner(lines, work, args.workers))
            times["one"].append(with_runner(lines, work, 1))
            print(f"round {round_}: CPUs {busy:.0%} busy before; serial {times['serial'][-1]:.2f} s, "
                  f"{args.workers} workers {times['many'][-1]:.2f} s, 1 worker {times['one'][-1]:.2f} s",
                  flush=True)
    t_serial, t_one, t_many = (min(times[k]) for k in ("serial", "one", "many"))
    ratio = t_many / t_serial
    print(f"{args.lines} lines, {os.cpu_count()} CPUs, best of {args.repeat} rounds")
    print(f"serial (bash -c, one after another): {t_serial:6.2f} s")
    print(f"runner, 1 worker:                    {t_one:6.2f} s")
    print(f"runner, {args.workers} workers:                   {t_many:6.2f} s  "
          f"= {ratio:.2f} x serial (limit {args.limit})")
    return 0 if ratio < args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
