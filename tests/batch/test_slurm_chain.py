"""A two-stage chain of the project's stage scripts through a real SLURM, with pylauncher
and with GNU parallel.

Stage A is ``stage1/snowball_wrapper.py`` (Detector1 with the snowball
expansion), stage B ``stage2/image2.py``, on small simulated exposures; the
lines are the generator's own (``stages.detector1_lines`` and
``stages.image2_lines``). One exposure's raw file is truncated, so its line
of stage A fails. The job of stage A must end non-zero and report that line
with its exit code, stage B must never start, and the rerun file must hold
exactly that line; once the file is restored, submitting the chain with the
rerun file completes both stages.
"""

import io
import os
import shutil
import subprocess
import sys

import pytest

from ceers_nircam.batch import accounting, slurm, stages
from ceers_nircam.batch.runfile import Line, read_run_file, write_order, write_run_file
from ceers_nircam.fitsio import check_fits

pytestmark = pytest.mark.slurm

NLINES = 2
BROKEN = 2  # the line of stage A that is made to fail


# --------------------------------------------------------------------------- the two stages
STAGE_A, STAGE_B = "detector1_and_snowballs", "image2"
FAILURE_TEXT = "not a readable FITS file"  # in the broken line's log


def _root(i):
    return f"jw01345001001_02201_{i:05d}_nrca1"


def _plan(work):
    settings = stages.BatchSettings(workdir=str(work), batch_dir=str(work / "batch"),
                                    python=sys.executable)
    return stages.make_plan("1", settings)[1]


def stage_a(i, work):
    """snowball_wrapper.py on exposure i (the generator's line)."""
    return stages.detector1_lines(_plan(work))[i - 1]


def stage_b(i, work):
    """image2.py on that exposure's rate file (the generator's line)."""
    return stages.image2_lines(_plan(work))[i - 1]


def break_line(work, i):
    """Make line i of stage A fail: its raw file is cut short (a copy is kept to restore it)."""
    uncal = work / "uncals" / f"{_root(i)}_uncal.fits"
    shutil.copyfile(uncal, work / "whole.fits")
    data = uncal.read_bytes()
    uncal.write_bytes(data[: len(data) // 2])


def fix_line(work, i):
    shutil.move(work / "whole.fits", work / "uncals" / f"{_root(i)}_uncal.fits")
# ---------------------------------------------------------------------------


@pytest.fixture
def chain(tmp_path, offline_env):
    """Small simulated exposures in tmp/uncals and the run files of the two stages in
    tmp/batch, the working directory tmp/."""
    done = subprocess.run([sys.executable, "-m", "ceers_nircam.offline.simulate",
                           str(tmp_path / "uncals"), "--subarray", "SUB160",
                           "--ngroups", "3", "--detectors", "NRCA1", "--filters", "F150W",
                           "--dithers", str(NLINES)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (tmp_path / "calibrated").mkdir()
    batch = tmp_path / "batch"
    write_run_file(str(batch / f"{STAGE_A}.run"), STAGE_A,
                   [stage_a(i, tmp_path) for i in range(1, NLINES + 1)], str(tmp_path))
    write_run_file(str(batch / f"{STAGE_B}.run"), STAGE_B,
                   [stage_b(i, tmp_path) for i in range(1, NLINES + 1)], str(tmp_path))
    write_order(str(batch), [f"{STAGE_A}.run", f"{STAGE_B}.run"])
    return tmp_path, batch


def _submit(batch, launcher, rerun=False):
    settings = slurm.SlurmSettings(launcher=launcher, tasks=2, time="00:10:00", job_name="t")
    slurm.write_job_scripts([str(batch)], settings)
    jobs = slurm.submit_chain(slurm.read_chain(str(batch)), slurm.SubmitOptions(rerun=rerun))
    assert [stage for stage, _ in jobs] == [STAGE_A, STAGE_B]
    return [job for _, job in jobs]


def _slurm_output(batch, job):
    folder = batch / "logs" / "slurm"
    found = [p for p in folder.iterdir() if p.name.endswith(f".{job}.out")] if folder.exists() else []
    return found[0].read_text() if found else None


@pytest.mark.parametrize("launcher", ["pylauncher", "parallel"])
def test_failed_line_stops_the_chain_and_its_rerun_completes_it(slurm_cluster, chain, launcher):
    work, batch = chain
    break_line(work, BROKEN)
    a1, b1 = _submit(batch, launcher)
    ended = slurm_cluster.wait([a1, b1], timeout=240)

    # Stage A's job failed because of its one failed line; stage B never started.
    assert ended[a1] == ("FAILED", 1)
    assert ended[b1][0] == "CANCELLED"
    assert _slurm_output(batch, b1) is None
    assert not (batch / "logs" / STAGE_B).exists()
    job_report = _slurm_output(batch, a1)
    assert f"{STAGE_A} line {BROKEN} FAILED (exit 1 " in job_report
    assert FAILURE_TEXT in job_report  # the tail of the line's own log

    # The status command says the same and writes the rerun file with exactly that line.
    results = accounting.report_status([str(batch)], out=io.StringIO())
    counts = {rf.stage: accounting.counts(states) for rf, states in results}
    assert counts[STAGE_A] == {"done": NLINES - 1, "failed": 1, "running": 0, "not run": 0}
    assert counts[STAGE_B] == {"done": 0, "failed": 0, "running": 0, "not run": NLINES}
    failed = [st for st in results[0][1] if st.state == accounting.FAILED]
    assert [(st.number, st.record["exit_code"]) for st in failed] == [(BROKEN, 1)]
    rerun = read_run_file(str(batch / f"{STAGE_A}.rerun.run"))
    assert [line.command for _, line in rerun.lines] == [stage_a(BROKEN, work).command]

    # Remove the cause and submit the chain with the rerun file: it completes.
    fix_line(work, BROKEN)
    a2, b2 = _submit(batch, launcher, rerun=True)
    ended = slurm_cluster.wait([a2, b2], timeout=240)
    assert ended == {a2: ("COMPLETED", 0), b2: ("COMPLETED", 0)}
    assert f"{STAGE_A}: 1 of 1 lines to run" in _slurm_output(batch, a2)
    assert f"{STAGE_B}: {NLINES} of {NLINES} lines to run" in _slurm_output(batch, b2)
    results = accounting.report_status([str(batch)], out=io.StringIO())
    assert all(accounting.all_done(states) for _, states in results)
    for i in range(1, NLINES + 1):
        for output in stage_b(i, work).outputs:
            check_fits(work / output, extensions=("SCI", "DQ"))
    assert not (batch / f"{STAGE_A}.rerun.run").exists()
    # The lines that had succeeded ran once, in the first job; the fixed one in the second.
    runfile = read_run_file(str(batch / f"{STAGE_A}.run"))
    jobs = {i: accounting.read_record(accounting.record_paths(runfile, stage_a(i, work))[0])["job"]
            for i in range(1, NLINES + 1)}
    assert jobs == {i: (a2 if i == BROKEN else a1) for i in range(1, NLINES + 1)}


def test_submit_command_prints_the_job_ids_of_an_afterok_chain(slurm_cluster, tmp_path):
    batch = tmp_path / "batch"
    write_run_file(str(batch / "one.run"), "one", [Line("sleep 2; echo 1 > one.txt", key="one",
                                                        outputs=("one.txt",))], str(tmp_path))
    write_run_file(str(batch / "two.run"), "two", [Line("echo 2 > two.txt", key="two",
                                                        outputs=("two.txt",))], str(tmp_path))
    write_order(str(batch), ["one.run", "two.run"])
    scripts = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "batch_scripts")

    def command(name, *args):
        done = subprocess.run([sys.executable, os.path.join(scripts, name), *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    command("make_slurm.py", str(batch), "--launcher", "parallel", "--tasks", "1", "--time", "00:05:00")
    printed = command("submit_chain.py", str(batch)).split()
    assert printed[0::2] == ["one", "two"]
    one, two = printed[1::2]
    pending = slurm_cluster.run("scontrol", "show", "job", two).stdout
    assert f"Dependency=afterok:{one}" in pending
    assert slurm_cluster.wait([one, two], timeout=120) == {one: ("COMPLETED", 0), two: ("COMPLETED", 0)}
    assert os.path.getmtime(tmp_path / "one.txt") <= os.path.getmtime(tmp_path / "two.txt")
