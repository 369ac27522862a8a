"""SLURM job scripts for the stages of a batch, and submitting them as one chain.

Each stage gets a job script that (1) sets up the environment, (2) writes the
launcher's job file with one wrapped line per line not yet complete
(``python -m ceers_nircam.batch.job prepare``), (3) runs the launcher on it,
and (4) checks the stage (``... job check``): the check prints the table and
the failed lines' logs, writes the rerun file and is the job's last command,
so a stage with a failed line ends the job with a non-zero exit and SLURM never
starts the stages that depend on it (``afterok``; with
``DependencyParameters=kill_invalid_depend`` they are cancelled).

Launchers:

- ``tacc``: TACC's launcher (``module load launcher``, ``LAUNCHER_JOB_FILE``,
  ``$LAUNCHER_DIR/paramrun``); exists only on TACC's systems.
- ``pylauncher``: TACC's Python launcher from PyPI; LocalLauncher on one node,
  ClassicLauncher (ssh to every node) on several.
- ``parallel``: GNU parallel; on several nodes each line goes through
  ``srun --exact -N1 -n1 -c1``.
"""

import dataclasses
import math
import os
import shlex
import subprocess
import sys

from ..cli import CeersError, get_logger, option
from .runfile import LOG_DIR, read_run_file, rerun_path, resolve_run_files, write_text
from . import accounting as acc

log = get_logger("batch.slurm")

LAUNCHERS = ("tacc", "pylauncher", "parallel")
CHAIN_FILE = "chain.txt"
SLURM_DIR = "slurm"


@dataclasses.dataclass(frozen=True)
class SlurmSettings:
    """Options of the stage job scripts."""

    launcher: str = option("tacc", "launcher that runs the lines inside each job", choices=LAUNCHERS)
    account: str | None = option(None, "allocation to charge (#SBATCH --account)")
    partition: str | None = option(None, "queue (#SBATCH --partition)")
    nodes: int = option(1, "nodes per stage job")
    tasks: int = option(4, "lines run at once in a stage job (#SBATCH --ntasks)")
    time: str = option("02:00:00", "wall-time limit of each stage job (HH:MM:SS)")
    mem: str | None = option(None, "memory per node (#SBATCH --mem), e.g. 180G")
    stage_tasks: tuple = option((), "per-stage tasks overriding --tasks, as STAGE=N", nargs="*")
    stage_time: tuple = option((), "per-stage time limits overriding --time, as STAGE=HH:MM:SS",
                               nargs="*")
    sched: str = option("dynamic", "TACC launcher scheduling (LAUNCHER_SCHED)",
                        choices=("dynamic", "interleaved", "block"))
    setup: tuple = option((), "shell lines run at the start of each job (module loads, "
                              "'source .../activate', 'source offline/ceers_env.sh')", nargs="*")
    python: str = option(sys.executable, "Python with ceers_nircam installed, used inside the jobs")
    job_name: str = option("ceers", "prefix of the job names")
    line_timeout: float | None = option(None, "seconds after which a line is killed (exit 124)")


def _per_stage(pairs, what, convert):
    values = {}
    for pair in pairs:
        stage, sep, value = pair.partition("=")
        if not sep or not stage:
            raise CeersError(f"--stage_{what} {pair!r}: expected STAGE=VALUE")
        try:
            values[stage] = convert(value)
        except ValueError:
            raise CeersError(f"--stage_{what} {pair!r}: bad value {value!r}") from None
    return values


def _sbatch_header(name, stage, settings, batch_dir):
    tasks = _per_stage(settings.stage_tasks, "tasks", int).get(stage, settings.tasks)
    limit = _per_stage(settings.stage_time, "time", str).get(stage, settings.time)
    out = os.path.join(batch_dir, LOG_DIR, SLURM_DIR, "%x.%j.out")
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={out}",
             f"#SBATCH --nodes={settings.nodes}", f"#SBATCH --ntasks={tasks}", f"#SBATCH --time={limit}"]
    for key in ("partition", "account", "mem"):
        if getattr(settings, key):
            lines.append(f"#SBATCH --{key}={getattr(settings, key)}")
    return lines, tasks


def threads_block(tasks, nodes):
    """Shell lines giving each line's OpenMP/BLAS pools its share of the node's cores.

    A launcher runs ``tasks / nodes`` lines side by side on a node; left alone,
    numpy's BLAS in each of them would start a thread per core of the node.
    A variable the user's setup lines already export is kept.
    """
    per_node = math.ceil(tasks / max(1, nodes))
    lines = [f'THREADS=$(( ${{SLURM_CPUS_ON_NODE:-{per_node}}} / {per_node} )); '
             '[ "$THREADS" -ge 1 ] || THREADS=1']
    lines += [f'export {name}="${{{name}:-$THREADS}}"' for name in acc.THREAD_VARIABLES]
    return lines


def launcher_block(settings, tasks, workdir):
    """Shell lines that run ``$JOBFILE`` with the chosen launcher."""
    ntasks = f'"${{SLURM_NTASKS:-{tasks}}}"'
    if settings.launcher == "tacc":
        ppn = math.ceil(tasks / max(1, settings.nodes))
        return ["module load launcher",
                f"export LAUNCHER_WORKDIR={shlex.quote(workdir)}",
                'export LAUNCHER_JOB_FILE="$JOBFILE"',
                f"export LAUNCHER_PPN={ppn}",
                f"export LAUNCHER_SCHED={settings.sched}",
                'export LAUNCHER_PLUGIN_DIR="$LAUNCHER_DIR/plugins"',
                "export LAUNCHER_RMI=SLURM",
                '"$LAUNCHER_DIR/paramrun"']
    if settings.launcher == "pylauncher":
        kind = "local" if settings.nodes == 1 else "classic"
        return [f'{shlex.quote(settings.python)} -m ceers_nircam.batch.job pylauncher "$JOBFILE" '
                f"--slots {ntasks} --kind {kind}"]
    command = "" if settings.nodes == 1 else " srun --exact -N1 -n1 -c1 bash -c {}"
    return [f'parallel --will-cite --jobs {ntasks} --halt never --joblog "$JOBFILE.joblog"'
            f'{command} < "$JOBFILE"']


def job_script(runfile, settings, index, batch_dir):
    """Text of the job script of one stage.

    Parameters
    ----------
    runfile : RunFile
        The stage's run file (its path is the default argument of the script).
    settings : SlurmSettings
    index : int
        Position of the stage in the chain (names the job).
    batch_dir : str
        Directory whose ``logs/slurm`` receives SLURM's output files.
    """
    name = f"{settings.job_name}_{index:02d}_{runfile.stage}"
    lines, tasks = _sbatch_header(name, runfile.stage, settings, batch_dir)
    py = shlex.quote(settings.python)
    line_opts = f" --timeout {settings.line_timeout:g}" if settings.line_timeout else ""
    lines += [
        f"# ceers-nircam stage {runfile.stage}: {len(runfile.lines)} lines, launcher {settings.launcher}.",
        "# Usage: sbatch THIS_SCRIPT [RUNFILE]   (default: the stage's run file; give its",
        "# .rerun.run to run only the lines that failed or did not run)",
        "set -u",
        f"RUNFILE=\"${{1:-{runfile.path}}}\"",
        f"cd {shlex.quote(runfile.workdir)} || exit 1",
        *settings.setup,
        *threads_block(tasks, settings.nodes),
        f'JOBFILE=$({py} -m ceers_nircam.batch.job prepare "$RUNFILE"{line_opts}) || exit 1',
        'if [ -s "$JOBFILE" ]; then',
        *("    " + ln for ln in launcher_block(settings, tasks, runfile.workdir)),
        "fi",
        "# The stage's exit status: non-zero when any line failed or did not run.",
        f'{py} -m ceers_nircam.batch.job check "$RUNFILE"',
    ]
    return "\n".join(lines) + "\n"


def write_job_scripts(paths, settings, out_dir=None):
    """Write one job script per run file and the chain file that orders them.

    Parameters
    ----------
    paths : sequence of str
        Run files or batch directories (their ``stages.txt`` order).
    settings : SlurmSettings
    out_dir : str, optional
        Where the scripts go (default: ``slurm/`` in the first run file's directory).

    Returns
    -------
    list of str
        The scripts, in chain order.
    """
    runfiles = [read_run_file(p) for p in resolve_run_files(paths)]
    if not runfiles:
        raise CeersError("no run files to write job scripts for")
    batch_dir = os.path.dirname(runfiles[0].path)
    out_dir = os.path.abspath(out_dir or os.path.join(batch_dir, SLURM_DIR))
    os.makedirs(os.path.join(batch_dir, LOG_DIR, SLURM_DIR), exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    scripts, chain = [], []
    for index, runfile in enumerate(runfiles, 1):
        script = os.path.join(out_dir, f"{index:02d}_{runfile.stage}.slurm")
        write_text(script, job_script(runfile, settings, index, batch_dir))
        os.chmod(script, 0o755)
        scripts.append(script)
        chain.append(f"{script}\t{runfile.path}\n")
    for name in os.listdir(out_dir):
        stale = os.path.join(out_dir, name)
        if name.endswith(".slurm") and stale not in scripts:
            os.unlink(stale)
    write_text(os.path.join(out_dir, CHAIN_FILE), "".join(chain))
    log.info("Wrote %d %s job scripts to %s", len(scripts), settings.launcher, out_dir)
    return scripts


def read_chain(path):
    """(script, run file) pairs of a chain file, or of a batch directory's ``slurm/chain.txt``."""
    if os.path.isdir(path):
        path = os.path.join(path, SLURM_DIR, CHAIN_FILE)
    if not os.path.isfile(path):
        raise CeersError(f"{path}: no chain file (write the job scripts with make_slurm.py first)")
    pairs = []
    with open(path) as fh:
        for number, text in enumerate(fh, 1):
            if not text.strip():
                continue
            script, sep, runfile = text.rstrip("\n").partition("\t")
            if not sep:
                raise CeersError(f"{path}:{number}: malformed chain line: {text.strip()}")
            pairs.append((script, runfile))
    return pairs


def rerun_or_full(run_path):
    """The stage's rerun file when one exists, else its run file."""
    rerun = rerun_path(run_path)
    return rerun if os.path.exists(rerun) else run_path


@dataclasses.dataclass(frozen=True)
class SubmitOptions:
    """Options of the chain submission."""

    after: str | None = option(None, "job id the first stage waits for (afterok)")
    from_stage: str | None = option(None, "submit from this stage on")
    rerun: bool = option(False, "give each stage its .rerun.run file where one exists (only the "
                                "lines that failed or did not run)")
    sbatch: str = option("sbatch", "the sbatch command")


def submit_chain(chain, options=SubmitOptions()):
    """Submit every stage job, each depending ``afterok`` on the one before.

    Parameters
    ----------
    chain : list of (str, str)
        (job script, run file) pairs in order (:func:`read_chain`).
    options : SubmitOptions

    Returns
    -------
    list of (str, str)
        (stage, job id) in submission order.
    """
    stages = [read_run_file(runfile).stage for _, runfile in chain]
    if options.from_stage is not None:
        if options.from_stage not in stages:
            raise CeersError(f"unknown stage {options.from_stage!r}; the chain has "
                             f"{', '.join(stages)}")
        start = stages.index(options.from_stage)
        chain, stages = chain[start:], stages[start:]
    submitted, previous = [], options.after
    for (script, runfile), stage in zip(chain, stages):
        args = [options.sbatch, "--parsable"]
        if previous:
            args.append(f"--dependency=afterok:{previous}")
        args.append(script)
        if options.rerun:
            args.append(rerun_or_full(runfile))
        previous = _sbatch(args)
        submitted.append((stage, previous))
        log.info("Submitted %s as job %s%s", stage, previous,
                 f" (after {submitted[-2][1]})" if len(submitted) > 1 else "")
    return submitted


def _sbatch(args):
    try:
        done = subprocess.run(args, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CeersError(f"{args[0]} not found: submit from a machine with SLURM") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise CeersError(f"sbatch {args[-1]} failed: {message[-1] if message else done.returncode}")
    return done.stdout.strip().split(";")[0]
