"""Run files on one machine (a laptop or one node) with N workers.

:func:`run_file` runs the lines of one run file, at most ``workers`` at a
time, each through :func:`accounting.run_line` (so the records, logs, skips
and rerun files are the same as under SLURM), and logs progress: lines done,
failed and running, the elapsed time and an estimate of the time left.
:func:`run_chain` runs several files in order and, like ``afterok`` on a
cluster, does not start a stage after one that left lines undone.
"""

import concurrent.futures as cf
import dataclasses
import os
import threading
import time

from ..cli import get_logger, option
from . import accounting as acc
from .runfile import read_run_file, resolve_run_files

log = get_logger("batch.runner")


@dataclasses.dataclass(frozen=True)
class RunnerOptions:
    """Options of the local runner."""

    workers: int = option(os.cpu_count() or 1, "lines run at once")
    force: bool = option(False, "rerun lines whose outputs are already complete")
    timeout: float | None = option(None, "seconds after which a line is killed (exit 124)")
    workdir: str | None = option(None, "directory the lines run in (default: the one the run "
                                       "file was written for)")
    interval: float = option(10.0, "seconds between progress messages")
    keep_going: bool = option(False, "start later stages even when one has lines not done")
    threads: int = option(0, "threads of each line's OpenMP/BLAS pools (0: the cores shared "
                             "among the workers; a variable already set is kept)")


def threads_per_line(workers, threads=0):
    """Threads each line's numerical pools get: ``threads``, or the cores divided among the workers."""
    if threads and threads > 0:
        return int(threads)
    return max(1, (os.cpu_count() or 1) // max(1, int(workers)))


def format_seconds(seconds):
    """``H:MM:SS`` for a number of seconds."""
    seconds = int(round(max(0.0, seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts of one stage's lines while they run, and the message that reports them."""

    def __init__(self, stage, total):
        self.stage, self.total = stage, total
        self.done = self.skipped = self.failed = self.running = 0
        self.start = time.monotonic()
        self._lock = threading.Lock()

    def started(self):
        with self._lock:
            self.running += 1

    def finished(self, record):
        with self._lock:
            if record["status"] == "skipped":
                self.skipped += 1
                return
            self.running -= 1
            if record["status"] == acc.DONE:
                self.done += 1
            else:
                self.failed += 1

    def message(self):
        """``stage: 12/20 done (3 skipped), 1 failed, 2 running, elapsed 0:01:02, about 0:00:40 left``."""
        with self._lock:
            elapsed = time.monotonic() - self.start
            finished = self.done + self.failed + self.skipped
            ran = self.done + self.failed
            left = self.total - finished
            if left == 0:
                estimate = "finished"
            elif ran:
                estimate = f"about {format_seconds(elapsed / ran * left)} left"
            else:
                estimate = "no estimate yet"
            return (f"{self.stage}: {self.done + self.skipped}/{self.total} done"
                    f"{f' ({self.skipped} skipped)' if self.skipped else ''}, {self.failed} failed, "
                    f"{self.running} running, elapsed {format_seconds(elapsed)}, {estimate}")


def run_file(path, workers=1, *, force=False, timeout=None, workdir=None, interval=10.0,
             threads=0):
    """Run one run file with ``workers`` lines at a time.

    Parameters
    ----------
    path : str
        The ``.run`` file.
    workers : int
        Lines run at once.
    force : bool
        Rerun lines whose outputs are already complete.
    timeout : float, optional
        Seconds after which a line is killed.
    workdir : str, optional
        Working directory, overriding the sidecar's.
    interval : float
        Seconds between progress messages (one is always logged at the end).
    threads : int
        Threads of each line's OpenMP/BLAS pools; 0 divides the cores among
        the workers (:func:`threads_per_line`).

    Returns
    -------
    tuple (RunFile, list of LineState)
        The file and the state of each of its lines after the run; the
        stage's rerun file has been written (or removed when all are done).
    """
    runfile = read_run_file(path, workdir)
    progress = Progress(runfile.stage, len(runfile.lines))
    log.info("%s: %d lines from %s, %d at a time", runfile.stage, len(runfile.lines), path, workers)
    if runfile.lines:
        _run_lines(runfile, progress, max(1, int(workers)), force, timeout, interval,
                   threads_per_line(workers, threads))
    log.info("%s", progress.message())
    states = acc.stage_states(runfile)
    rerun, n = acc.write_rerun(runfile, states)
    if rerun:
        log.warning("%s: %d line(s) not done; rerun file %s", runfile.stage, n, rerun)
    return runfile, states


def _run_lines(runfile, progress, workers, force, timeout, interval, threads):
    last = time.monotonic()
    pool = cf.ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(acc.run_line, runfile, number, force=force, timeout=timeout,
                               on_start=progress.started, threads=threads): number
                   for number, _ in runfile.lines}
        pending = set(futures)
        while pending:
            finished, pending = cf.wait(pending, timeout=min(interval, 1.0),
                                        return_when=cf.FIRST_COMPLETED)
            for future in finished:
                record = future.result()
                progress.finished(record)
                if record["status"] == acc.FAILED:
                    log.error("%s line %d failed (%s): %s; log %s", runfile.stage, futures[future],
                              record.get("reason") or f"exit {record['exit_code']}",
                              record["command"], record["log"])
            if pending and time.monotonic() - last >= interval:
                log.info("%s", progress.message())
                last = time.monotonic()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        acc.terminate_running()
        raise
    pool.shutdown(wait=True)


def run_batch(paths, options=RunnerOptions()):
    """:func:`run_chain` with :class:`RunnerOptions` (what ``run_local.py`` and the demo call)."""
    return run_chain(paths, options.workers, keep_going=options.keep_going, force=options.force,
                     timeout=options.timeout, workdir=options.workdir, interval=options.interval,
                     threads=options.threads)


def run_chain(paths, workers=1, *, keep_going=False, **kwargs):
    """Run run files (or batch directories) in order, stopping after a stage with undone lines.

    Parameters
    ----------
    paths : sequence of str
        Run files, or batch directories (their ``stages.txt`` order).
    workers : int
        Lines run at once within a stage.
    keep_going : bool
        Start later stages even when one left lines undone.
    **kwargs
        Passed to :func:`run_file` (``force``, ``timeout``, ``workdir``, ``interval``,
        ``threads``).

    Returns
    -------
    list of (RunFile, list of LineState)
        One entry per stage that was run.
    """
    results = []
    files = resolve_run_files(paths)
    for path in files:  # a malformed line in any stage stops the chain before it starts
        read_run_file(path, kwargs.get("workdir"))
    for index, path in enumerate(files, 1):
        log.info("Stage %d of %d: %s", index, len(files), path)
        runfile, states = run_file(path, workers, **kwargs)
        results.append((runfile, states))
        if not acc.all_done(states) and not keep_going:
            log.error("%s has lines not done: later stages not started", runfile.stage)
            break
    return results
