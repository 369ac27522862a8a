"""What a SLURM stage job runs around its launcher: ``python -m ceers_nircam.batch.job ...``.

    prepare RUNFILE      write the launcher's job file: one wrapped line per line
                         not yet complete; print its path
    line RUNFILE N       run line N of RUNFILE with accounting (the job file's lines)
    pylauncher JOBFILE   run a job file with pylauncher (LocalLauncher or ClassicLauncher)
    check RUNFILE        report the stage, write its rerun file, exit 1 if any
                         line is not done (so that afterok dependents never start)

A job script is: setup, ``prepare``, the launcher on the job file, ``check``.
"""

import dataclasses
import os
import shlex
import signal
import sys
import time

from ..cli import (CeersError, add_options, get_logger, make_parser, option, option_tokens,
                   params_from_args, run, setup_logging)
from . import accounting as acc
from .runfile import read_run_file, write_text

log = get_logger("batch.job")


@dataclasses.dataclass(frozen=True)
class LineOptions:
    timeout: float | None = option(None, "seconds after which a line is killed (exit 124)")
    force: bool = option(False, "run lines even if their outputs are complete")


@dataclasses.dataclass(frozen=True)
class PylauncherOptions:
    slots: int = option(1, "lines run at once (SLURM_NTASKS)")
    kind: str = option("local", "LocalLauncher (one node) or ClassicLauncher (several nodes, ssh)",
                       choices=("local", "classic"))
    delay: float = option(0.1, "seconds between pylauncher's task checks (its default is 0.5)")
    workdir: str | None = option(None, "folder pylauncher runs in and writes its files to "
                                       "(default: <job file>.pylauncher)")


def job_id():
    """SLURM's job id, or ``local<pid>`` outside SLURM."""
    return os.environ.get("SLURM_JOB_ID") or f"local{os.getpid()}"


def wrapped_line(runfile, number, options=LineOptions()):
    """The job-file line that runs line ``number`` of ``runfile`` through the accounting wrapper."""
    words = [sys.executable, "-m", "ceers_nircam.batch.job", "line", runfile.path, str(number)]
    return shlex.join(words + option_tokens(options))


def prepare(path, jobfile=None, options=LineOptions()):
    """Write the job file of a run file: wrapped lines for every line not yet done.

    Returns
    -------
    tuple (str, int, int)
        The job file, the lines in it and the lines of the run file.
    """
    runfile = read_run_file(path)
    os.makedirs(runfile.log_dir, exist_ok=True)
    states = acc.stage_states(runfile)
    todo = [st.number for st in states if options.force or st.state != acc.DONE]
    jobfile = jobfile or os.path.join(runfile.log_dir, f"jobfile.{job_id()}.txt")
    write_text(jobfile, "".join(wrapped_line(runfile, n, options) + "\n" for n in todo))
    log.info("%s: %d of %d lines to run (%d already complete); job file %s", runfile.stage,
             len(todo), len(states), len(states) - len(todo), jobfile)
    return jobfile, len(todo), len(states)


def run_one(path, number, options=LineOptions()):
    """Run one line with accounting; return the exit status for the launcher."""
    runfile = read_run_file(path)
    handler = lambda signum, frame: acc.terminate_running(grace=2.0)  # noqa: E731
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)
    record = acc.run_line(runfile, number, force=options.force, timeout=options.timeout)
    if record["status"] == acc.FAILED:
        return record["exit_code"] or 1
    return 0


def run_pylauncher(jobfile, options=PylauncherOptions()):
    """Run a job file with pylauncher, inside a fresh folder that takes all of pylauncher's files.

    pylauncher writes its task files, ``queuestate`` and ``pylauncher_tmpdir*``
    into its current directory; running it from a folder of its own beside the
    job file keeps them out of the working directory (the wrapped lines carry
    absolute paths and change to the working directory themselves).
    """
    try:
        from pylauncher import pylauncher as pl
    except ImportError:
        raise CeersError("pylauncher is not installed (pip install pylauncher paramiko)") from None
    jobfile = os.path.abspath(jobfile)
    if os.path.getsize(jobfile) == 0:
        log.info("%s is empty: nothing to launch", jobfile)
        return 0
    scratch = os.path.abspath(options.workdir or f"{jobfile}.pylauncher")
    os.makedirs(scratch, exist_ok=True)
    here = os.getcwd()
    os.chdir(scratch)
    try:
        workdir = f"tasks.{int(time.time() * 1000)}"
        if options.kind == "local":
            pl.LocalLauncher(jobfile, options.slots, workdir=workdir, delay=options.delay)
        else:
            pl.ClassicLauncher(jobfile, workdir=workdir, delay=options.delay)
    finally:
        os.chdir(here)
    return 0


def check(path, options=acc.StatusOptions(), out=None):
    """Report a stage after its launcher ended and write its rerun file.

    Returns
    -------
    int
        0 if every line is done, 1 otherwise.
    """
    (_, states), = acc.report_status([path], options, out)
    return 0 if acc.all_done(states) else 1


def _parser():
    parser = make_parser("Steps of a SLURM stage job around its launcher.",
                         prog="python -m ceers_nircam.batch.job")
    sub = parser.add_subparsers(dest="command", required=True)
    p = add_options(sub.add_parser("prepare", help="write the launcher's job file"), LineOptions)
    p.add_argument("runfile")
    p.add_argument("--jobfile", help="job file to write (default logs/<stage>/jobfile.<job id>.txt)")
    p = add_options(sub.add_parser("line", help="run one line with accounting"), LineOptions)
    p.add_argument("runfile")
    p.add_argument("number", type=int)
    p = add_options(sub.add_parser("pylauncher", help="run a job file with pylauncher"),
                    PylauncherOptions)
    p.add_argument("jobfile")
    p = add_options(sub.add_parser("check", help="report a stage, write its rerun file"),
                    acc.StatusOptions)
    p.add_argument("runfile")
    return parser


def _main(argv):
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "prepare":
        jobfile, _, _ = prepare(args.runfile, args.jobfile, params_from_args(LineOptions, args))
        print(jobfile)
        return 0
    if args.command == "line":
        return run_one(args.runfile, args.number, params_from_args(LineOptions, args))
    if args.command == "pylauncher":
        return run_pylauncher(args.jobfile, params_from_args(PylauncherOptions, args))
    return check(args.runfile, params_from_args(acc.StatusOptions, args))


def main(argv=None):
    sys.exit(run(_main, argv))


if __name__ == "__main__":
    main()
