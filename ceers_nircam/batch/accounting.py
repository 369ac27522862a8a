"""Per-line accounting: run one line, record what happened, judge what is complete.

No launcher says which lines of a job failed (TACC's launcher, pylauncher and
GNU parallel all report success when lines fail, or hang on a bare ``exit``),
so every line runs through :func:`run_line`. It runs the command in its own
``bash -c`` (whatever the command does, the launcher sees an ordinary process
end), sends its output to a log file, and writes a record beside it:

    <batch dir>/logs/<stage>/<key>.<hash>.log    the command's output
    <batch dir>/logs/<stage>/<key>.<hash>.json   status, exit code, times, host

A line is complete when its recorded run succeeded and every output it must
leave is complete: the file exists, reads as FITS (:func:`fitsio.check_fits`;
JSON files must parse) and, for a step that edits a file in place, carries
that step's history entry (:func:`history.already_done`). A line whose
outputs are complete is skipped on the next run, so a stage can be resumed by
running its file again.
"""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from .. import history
from ..cli import CeersError, get_logger, option
from ..fitsio import check_fits
from .runfile import (read_run_file, record_name, rerun_path, resolve_run_files, sidecar_path,
                      write_run_file, write_text)

log = get_logger("batch")

DONE, FAILED, RUNNING, NOT_RUN = "done", "failed", "running", "not run"
STATES = (DONE, FAILED, RUNNING, NOT_RUN)
TIMEOUT_EXIT = 124


# --------------------------------------------------------------------------- outputs

def output_problem(path, history_step=None):
    """Why the file at ``path`` is not a complete output, or None if it is.

    Parameters
    ----------
    path : str
        The output file.
    history_step : str, optional
        Step whose history entry a FITS output must carry.

    Returns
    -------
    str or None
        A one-line reason (``"x.fits: no such file"``), or None.
    """
    if not os.path.exists(path):
        return f"{path}: no such file"
    if path.endswith((".fits", ".fits.gz")):
        try:
            check_fits(path)
        except CeersError as err:
            return str(err)
        if history_step and not history.already_done(path, history_step):
            return f"{path}: no '{history_step}' history entry"
    elif path.endswith(".json"):
        try:
            with open(path) as fh:
                json.load(fh)
        except (OSError, ValueError) as err:
            return f"{path}: not readable JSON ({err})"
    elif os.path.getsize(path) == 0:
        return f"{path}: empty"
    return None


def _stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def output_stamps(line, workdir):
    """Modification time and size of each output, as recorded after a successful run."""
    return {out: _stamp(os.path.join(workdir, out)) for out in line.outputs}


def outputs_problem(line, workdir, stamps=None):
    """First reason the line's outputs are incomplete, or None.

    Outputs whose modification time and size still equal ``stamps`` (taken
    when a run of the line was found complete) are not read again.
    """
    stamps = stamps or {}
    for out in line.outputs:
        full = os.path.join(workdir, out)
        current = _stamp(full)
        if current is not None and stamps.get(out) == current:
            continue
        problem = output_problem(full, line.history)
        if problem:
            return problem
    return None


# --------------------------------------------------------------------------- records

def record_paths(runfile, line):
    """(record JSON, log) paths of a line."""
    stem = os.path.join(runfile.log_dir, record_name(line))
    return stem + ".json", stem + ".log"


def read_record(path):
    """A line's record, or None if there is none (or it is unreadable)."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _write_record(path, record):
    write_text(path, json.dumps(record, indent=1) + "\n")


@dataclasses.dataclass
class LineState:
    """Where one line of a run file stands.

    Attributes
    ----------
    number : int
        Line number in the run file.
    line : Line
    state : str
        ``done``, ``failed``, ``running`` or ``not run``.
    record : dict or None
        The line's last record.
    reason : str
        Why it is not done (empty when done).
    """

    number: int
    line: object
    state: str
    record: dict | None = None
    reason: str = ""


def _newest_mtime(line, workdir):
    stamps = [_stamp(os.path.join(workdir, o)) for o in line.outputs]
    return max(s[0] for s in stamps) / 1e9 if stamps and all(stamps) else 0.0


def _vanished(record):
    """True if a running record's process is known to be gone (same host, no such pid)."""
    if record.get("host") != socket.gethostname() or not record.get("pid"):
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def line_state(runfile, number, line):
    """Judge one line from its record and its outputs.

    A run recorded as failed stays failed unless its outputs were completed
    after it (by an edited rerun line, say). A recorded success whose outputs
    have since gone missing counts as not run.
    """
    record = read_record(record_paths(runfile, line)[0])
    status = (record or {}).get("status")
    if status == RUNNING:
        if _vanished(record):
            return LineState(number, line, FAILED, record,
                             f"interrupted: its runner (pid {record['pid']}) ended without recording")
        return LineState(number, line, RUNNING, record,
                         "recorded as running (still running, or killed before it could record)")
    succeeded = status in (DONE, "skipped")
    if not line.outputs:
        if succeeded:
            return LineState(number, line, DONE, record)
        if status == FAILED:
            return LineState(number, line, FAILED, record, record.get("reason", ""))
        return LineState(number, line, NOT_RUN, record)
    problem = outputs_problem(line, runfile.workdir, record.get("stamps") if succeeded else None)
    if problem is None:
        if status == FAILED and _newest_mtime(line, runfile.workdir) <= record.get("ended", 0):
            return LineState(number, line, FAILED, record, record.get("reason", ""))
        return LineState(number, line, DONE, record)
    if status == FAILED:
        return LineState(number, line, FAILED, record, record.get("reason", ""))
    if succeeded:
        return LineState(number, line, NOT_RUN, record, f"incomplete since its last run: {problem}")
    return LineState(number, line, NOT_RUN, record, problem)


def stage_states(runfile):
    """LineState of every line of a run file, in file order."""
    return [line_state(runfile, n, line) for n, line in runfile.lines]


# --------------------------------------------------------------------------- running one line

_CHILDREN = set()
_CHILDREN_LOCK = threading.Lock()


def terminate_running(grace=5.0):
    """Stop every command started by :func:`run_line` in this process (SIGTERM, then SIGKILL)."""
    with _CHILDREN_LOCK:
        procs = list(_CHILDREN)
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# Thread pools of OpenMP, OpenBLAS and MKL (numpy, scipy, the pipeline's steps).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def child_environment(threads=None):
    """The environment of a line: ours, with this interpreter's bin directory first on PATH.

    ``python``, ``strun`` and the project's commands in a line then resolve to
    the environment the runner itself uses, also where a launcher starts the
    wrapper through ssh with a bare login PATH. With ``threads``, each
    numerical thread pool a line starts is limited to that many threads
    (unless the user set its variable): lines running side by side then do not
    each start a pool as large as the machine and fight over its cores.
    """
    env = dict(os.environ)
    if threads:
        for name in THREAD_VARIABLES:
            env.setdefault(name, str(int(threads)))
    bindir = os.path.dirname(sys.executable)
    parts = env.get("PATH", "").split(os.pathsep)
    if parts[:1] != [bindir]:
        env["PATH"] = os.pathsep.join([bindir] + [p for p in parts if p])
    return env


def _exit_code(returncode):
    return 128 - returncode if returncode < 0 else returncode


def _base_record(runfile, number, line, log_path):
    return {"stage": runfile.stage, "run_file": runfile.path, "line": number,
            "command": line.command, "key": line.key, "host": socket.gethostname(),
            "pid": os.getpid(), "log": log_path, "job": os.environ.get("SLURM_JOB_ID")}


def run_line(runfile, number, *, force=False, timeout=None, on_start=None, threads=None):
    """Run line ``number`` of a run file with accounting; return its record.

    Parameters
    ----------
    runfile : RunFile
    number : int
        Line number in the file.
    force : bool
        Run even if the line is already complete.
    timeout : float, optional
        Seconds after which the command is killed (exit code 124).
    on_start : callable, optional
        Called with no argument just before the command starts (not for a
        skipped line).
    threads : int, optional
        Threads each numerical library of the command may start (see
        :func:`child_environment`).

    Returns
    -------
    dict
        The record written: ``status`` (``done``, ``skipped`` or ``failed``),
        ``exit_code``, ``wall_s``, ``reason``, ``log`` ...
    """
    line = runfile.line(number)
    rec_path, log_path = record_paths(runfile, line)
    os.makedirs(runfile.log_dir, exist_ok=True)
    record = _base_record(runfile, number, line, log_path)
    if not force:
        state = line_state(runfile, number, line)
        if state.state == DONE:
            if state.record and state.record.get("status") in (DONE, "skipped"):
                return dict(state.record, status="skipped")  # the record of the run that did it stays
            record.update(status="skipped", exit_code=0, wall_s=0.0, started=time.time(),
                          ended=time.time(), reason="outputs already complete",
                          stamps=output_stamps(line, runfile.workdir))
            _write_record(rec_path, record)
            return record
    started = time.time()
    record.update(status=RUNNING, started=started)
    _write_record(rec_path, record)
    if on_start:
        on_start()
    code, reason = _execute(line.command, runfile.workdir, log_path, timeout, threads)
    ended = time.time()
    if code == 0:
        reason = outputs_problem(line, runfile.workdir) or ""
        if reason:
            reason = f"exit 0 but {reason}"
    record.update(status=FAILED if reason or code else DONE, exit_code=code, ended=ended,
                  wall_s=round(ended - started, 3), reason=reason)
    if record["status"] == DONE:
        record["stamps"] = output_stamps(line, runfile.workdir)
    with open(log_path, "a") as fh:
        fh.write(f"# exit {code} after {ended - started:.1f} s{': ' + reason if reason else ''}\n")
    _write_record(rec_path, record)
    return record


def _execute(command, workdir, log_path, timeout, threads=None):
    """Run ``command`` in ``bash -c`` with its output to ``log_path``; return (exit code, reason)."""
    with open(log_path, "w") as out:
        out.write(f"# {command}\n# started {time.strftime('%Y-%m-%d %H:%M:%S')} on "
                  f"{socket.gethostname()} in {workdir}\n")
        out.flush()
        try:
            proc = subprocess.Popen(["bash", "-c", command], cwd=workdir, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=child_environment(threads), start_new_session=True)
        except OSError as err:
            return 127, f"could not start: {err}"
        with _CHILDREN_LOCK:
            _CHILDREN.add(proc)
        try:
            returncode = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            return TIMEOUT_EXIT, f"timed out after {timeout:g} s"
        finally:
            with _CHILDREN_LOCK:
                _CHILDREN.discard(proc)
    code = _exit_code(returncode)
    if returncode < 0:
        return code, f"killed by signal {-returncode}"
    return code, (f"exit {code}" if code else "")


# --------------------------------------------------------------------------- reports

def counts(states):
    """Number of lines in each state."""
    return {s: sum(1 for st in states if st.state == s) for s in STATES}


def log_tail(path, n=10):
    """The last ``n`` lines of a log file (empty if it does not exist)."""
    try:
        with open(path, errors="replace") as fh:
            return [ln.rstrip("\n") for ln in fh.readlines()[-n:]]
    except OSError:
        return []


def format_table(results):
    """Table of lines per state, one row per stage.

    Parameters
    ----------
    results : list of (RunFile, list of LineState)
    """
    width = max([len("stage")] + [len(rf.stage) for rf, _ in results])
    rows = [f"{'stage':<{width}}  {'lines':>5}  {'done':>5}  {'failed':>6}  {'running':>7}  {'not run':>7}"]
    for runfile, states in results:
        c = counts(states)
        rows.append(f"{runfile.stage:<{width}}  {len(states):>5}  {c[DONE]:>5}  {c[FAILED]:>6}  "
                    f"{c[RUNNING]:>7}  {c[NOT_RUN]:>7}")
    return "\n".join(rows)


def format_failures(runfile, states, tail=10):
    """Each failed (or still-running) line: number, exit code, time, command and its log's tail."""
    blocks = []
    for st in states:
        if st.state not in (FAILED, RUNNING):
            continue
        rec = st.record or {}
        if st.state == FAILED:
            took = f" after {rec['wall_s']:.1f} s" if "wall_s" in rec else ""
            head = (f"{runfile.stage} line {st.number} FAILED (exit {rec.get('exit_code', '?')}{took}): "
                    f"{st.line.command}")
        else:
            head = f"{runfile.stage} line {st.number} RUNNING? ({st.reason}): {st.line.command}"
        lines = [head]
        if st.reason and st.state == FAILED and st.reason != f"exit {rec.get('exit_code')}":
            lines.append(f"  reason: {st.reason}")
        if rec.get("log"):
            lines.append(f"  log: {rec['log']}")
            lines += [f"  | {t}" for t in log_tail(rec["log"], tail)]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def write_rerun(runfile, states):
    """Write the lines that are not done to the stage's rerun file.

    Returns
    -------
    tuple (str or None, int)
        The rerun file written (None when every line is done, in which case a
        stale rerun file is removed) and its number of lines.
    """
    todo = [st.line for st in states if st.state != DONE]
    path = rerun_path(runfile.path)
    if not todo:
        if path != runfile.path:
            for stale in (path, sidecar_path(path)):
                if os.path.exists(stale):
                    os.unlink(stale)
        return None, 0
    write_run_file(path, runfile.stage, todo, runfile.workdir,
                   comment=f"{runfile.stage}: the {len(todo)} line(s) of "
                           f"{os.path.basename(runfile.path)} that are not done")
    return path, len(todo)


def all_done(states):
    """True when every line is done."""
    return all(st.state == DONE for st in states)


@dataclasses.dataclass(frozen=True)
class StatusOptions:
    """Options of the status report."""

    tail: int = option(15, "lines of each failed line's log to show")
    no_rerun: bool = option(False, "do not write rerun files", flag="--no_rerun")


def report_status(paths, options=StatusOptions(), out=None):
    """Print, per stage, lines done / failed / running / not run and each failure's log tail.

    Parameters
    ----------
    paths : sequence of str
        Run files or batch directories.
    options : StatusOptions
    out : file, optional
        Where the report goes (default stdout).

    Returns
    -------
    list of (RunFile, list of LineState)
        Every stage's states; each stage with lines not done has had its
        rerun file written (unless ``no_rerun``).
    """
    out = out or sys.stdout
    results = [(rf, stage_states(rf)) for rf in (read_run_file(p) for p in resolve_run_files(paths))]
    print(format_table(results), file=out)
    for runfile, states in results:
        failures = format_failures(runfile, states, options.tail)
        if failures:
            print(failures, file=out)
    for runfile, states in results:
        if options.no_rerun:
            continue
        rerun, n = write_rerun(runfile, states)
        if rerun:
            print(f"rerun file: {rerun} ({n} line{'s' if n != 1 else ''})", file=out)
    out.flush()
    return results
