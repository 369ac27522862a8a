"""Run files: one shell command per line, and what each line must produce.

A stage's ``<stage>.run`` holds one command per line, as TACC's launcher,
pylauncher and GNU parallel expect (blank lines and ``#`` comments are
allowed). Beside it, ``<stage>.lines.json`` says, for each command, what it
works on (``key``: an exposure root, association or pointing), which files it
must leave behind (``outputs``, relative to the working directory) and, for a
step that changes a file in place, the history entry it records. The runner
and the status command use these to decide whether a line is complete; a
``.run`` file without its sidecar still runs, judged by exit status alone.

A batch directory also holds ``stages.txt``: the run files in execution order.
"""

import dataclasses
import hashlib
import json
import os
import re
import shlex

from ..cli import CeersError
from ..fitsio import atomic_path

SIDECAR_SUFFIX = ".lines.json"
RUN_SUFFIX = ".run"
RERUN_SUFFIX = ".rerun.run"
ORDER_FILE = "stages.txt"
LOG_DIR = "logs"


@dataclasses.dataclass(frozen=True)
class Line:
    """One command of a run file.

    Attributes
    ----------
    command : str
        The shell command, exactly as written in the run file.
    key : str
        What the line works on (exposure root, association name, pointing);
        names its log file.
    outputs : tuple of str
        Files the command must leave complete, relative to the working directory.
    history : str or None
        Step name each FITS output must carry in its history (in-place steps).
    """

    command: str
    key: str = ""
    outputs: tuple = ()
    history: str | None = None

    def to_dict(self):
        return {"command": self.command, "key": self.key, "outputs": list(self.outputs),
                "history": self.history}

    @classmethod
    def from_dict(cls, d):
        return cls(command=d["command"], key=d.get("key", ""), outputs=tuple(d.get("outputs", ())),
                   history=d.get("history"))


@dataclasses.dataclass
class RunFile:
    """A run file read from disk.

    Attributes
    ----------
    path : str
        Absolute path of the ``.run`` file.
    stage : str
        Stage name (from the sidecar, else the file name); records of a
        rerun file go with its stage.
    workdir : str
        Absolute directory the commands run in.
    lines : list of (int, Line)
        Executable lines with their line numbers in the file (1-based).
    """

    path: str
    stage: str
    workdir: str
    lines: list

    @property
    def log_dir(self):
        """Where the per-line logs and records of this stage go."""
        return os.path.join(os.path.dirname(self.path), LOG_DIR, self.stage)

    def line(self, number):
        """The Line at line ``number`` of the file."""
        for n, line in self.lines:
            if n == number:
                return line
        raise CeersError(f"{self.path}: line {number} holds no command")


def sidecar_path(run_path):
    """``x.run`` -> ``x.lines.json``."""
    base = run_path[: -len(RUN_SUFFIX)] if run_path.endswith(RUN_SUFFIX) else run_path
    return base + SIDECAR_SUFFIX


def stage_name(run_path):
    """Stage named by a run file's name: ``remstriping.rerun.run`` -> ``remstriping``."""
    name = os.path.basename(run_path)
    for suffix in (RERUN_SUFFIX, RUN_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def rerun_path(run_path):
    """``remstriping.run`` (or ``remstriping.rerun.run``) -> ``remstriping.rerun.run``."""
    if run_path.endswith(RERUN_SUFFIX):
        return run_path
    base = run_path[: -len(RUN_SUFFIX)] if run_path.endswith(RUN_SUFFIX) else run_path
    return base + RERUN_SUFFIX


def record_name(line):
    """File-name stem of a line's log and record: its key and a hash of its command."""
    digest = hashlib.sha1(line.command.encode()).hexdigest()[:10]
    key = re.sub(r"[^A-Za-z0-9_.+-]", "_", line.key)[:80] if line.key else "line"
    return f"{key}.{digest}"


def check_command(text, where):
    """Raise CeersError unless ``text`` splits into shell words (balanced quotes)."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError as err:
        raise CeersError(f"{where}: malformed line ({err}): {text}") from None
    if not words:
        raise CeersError(f"{where}: malformed line (no command): {text}")
    return words


def write_text(path, text):
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(text)
    return path


def write_run_file(path, stage, lines, workdir, comment=None):
    """Write a run file and its sidecar.

    Parameters
    ----------
    path : str
        The ``.run`` file to write.
    stage : str
        Stage name recorded in the sidecar.
    lines : sequence of Line
        The commands, in order.
    workdir : str
        Directory the commands run in (stored as an absolute path).
    comment : str, optional
        A first ``#`` line saying what the file is.

    Returns
    -------
    str
        ``path``.
    """
    for i, line in enumerate(lines, 1):
        if "\n" in line.command:
            raise CeersError(f"{path}: command {i} spans several lines")
        check_command(line.command, f"{path}: command {i}")
    header = f"# {comment}\n" if comment else ""
    write_text(path, header + "".join(line.command + "\n" for line in lines))
    sidecar = {"stage": stage, "workdir": os.path.abspath(workdir),
               "lines": [line.to_dict() for line in lines]}
    write_text(sidecar_path(path), json.dumps(sidecar, indent=1) + "\n")
    return path


def read_run_file(path, workdir=None):
    """Read a run file and, when present, its sidecar.

    Parameters
    ----------
    path : str
        The ``.run`` file.
    workdir : str, optional
        Override of the working directory (default: the sidecar's, else the
        current directory).

    Returns
    -------
    RunFile

    Raises
    ------
    CeersError
        If the file does not exist, a line is malformed or the sidecar is unreadable.
    """
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise CeersError(f"{path}: no such run file")
    meta = {}
    side = sidecar_path(path)
    if os.path.exists(side):
        try:
            with open(side) as fh:
                meta = json.load(fh)
        except (OSError, ValueError) as err:
            raise CeersError(f"{side}: unreadable sidecar ({err})") from None
    known = {d["command"].strip(): Line.from_dict(d) for d in meta.get("lines", [])}
    lines = []
    with open(path, errors="replace") as fh:
        for number, raw in enumerate(fh, 1):
            text = raw.rstrip("\r\n").strip()
            if not text or text.startswith("#"):
                continue
            check_command(text, f"{path}:{number}")
            lines.append((number, known.get(text, Line(text))))
    stage = meta.get("stage") or stage_name(path)
    workdir = os.path.abspath(workdir or meta.get("workdir") or os.getcwd())
    return RunFile(path=path, stage=stage, workdir=workdir, lines=lines)


def write_order(batch_dir, run_names):
    """Write ``stages.txt``: the run files of a batch directory in execution order."""
    return write_text(os.path.join(batch_dir, ORDER_FILE), "".join(f"{n}\n" for n in run_names))


def resolve_run_files(paths):
    """Run files named by the user, expanding batch directories into their ``stages.txt`` order.

    Raises
    ------
    CeersError
        If a path is neither a run file nor a directory with ``stages.txt``.
    """
    found = []
    for path in paths:
        if os.path.isdir(path):
            order = os.path.join(path, ORDER_FILE)
            if not os.path.exists(order):
                raise CeersError(f"{path}: no {ORDER_FILE} here (not a batch directory)")
            with open(order) as fh:
                names = [n.strip() for n in fh if n.strip() and not n.startswith("#")]
            found += [os.path.join(path, n) for n in names]
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise CeersError(f"{path}: no such run file or batch directory")
    return found
