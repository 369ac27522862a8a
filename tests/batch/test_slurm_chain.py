"""A two-stage chain of real commands through a real SLURM, with pylauncher and with GNU parallel.

Stage A makes raw exposures, stage B calibrates them; one line of stage A is
made to fail. The job of stage A must end non-zero and report that line with
its exit code, stage B must never start, and the rerun file must hold exactly
that line; once the cause is removed, submitting the chain with the rerun
file completes both stages.

Everything stage-specific is in the block marked "the two stages" below:
``stage_a`` and ``stage_b`` (one Line per exposure), ``break_line`` /
``fix_line`` and ``FAILURE_TEXT`` (what the broken line's log shows). To run
the project's own stage scripts instead: simulate the uncals in the fixture,
make ``stage_a`` the line ``python stage1/snowball_wrapper.py <root>_uncal.fits``
(output ``calibrated/<root>_rate.fits``) and ``stage_b``
``python stage2/image2.py calibrated/<root>_rate.fits`` (output
``calibrated/<root>_cal.fits``) -- the generator's ``stages.detector1_lines``
and ``stages.image2_lines`` build exactly these -- and let ``break_line`` /
``fix_line`` truncate and restore that exposure's uncal file
(``FAILURE_TEXT = "not a readable FITS file"``).
"""

import io
import os
import shlex
import subprocess
import sys

import pytest

from ceers_nircam.batch import accounting, slurm
from ceers_nircam.batch.runfile import Line, read_run_file, write_order, write_run_file
from ceers_nircam.fitsio import check_fits

pytestmark = pytest.mark.slurm

NLINES = 2
BROKEN = 2  # the line of stage A that is made to fail


# --------------------------------------------------------------------------- the two stages
STAGE_A, STAGE_B = "make_uncals", "detector1"
FAILURE_TEXT = "FileExistsError"  # in the broken line's log


def _root(i):
    return f"jw01345001{i:03d}_02201_00001_nrca1"


def stage_a(i):
    """Simulate one small subarray exposure (visit i) into uncals/v<i>/."""
    folder = f"uncals/v{i}"
    command = shlex.join(["ceers-simulate", folder, "--subarray", "SUB160", "--ngroups", "3",
                          "--detectors", "NRCA1", "--filters", "F150W", "--dithers", "1",
                          "--visit", str(i), "--seed", str(i)])
    return Line(command, key=_root(i), outputs=(f"{folder}/{_root(i)}_uncal.fits",))


def stage_b(i):
    """calwebb_detector1 on that exposure, into calibrated/."""
    command = shlex.join(["strun", "calwebb_detector1", f"uncals/v{i}/{_root(i)}_uncal.fits",
                          "--output_dir", "calibrated"])
    return Line(command, key=_root(i), outputs=(f"calibrated/{_root(i)}_rate.fits",))


def break_line(work, i):
    """Make line i of stage A fail: its output folder is taken by a plain file."""
    (work / "uncals").mkdir(exist_ok=True)
    (work / "uncals" / f"v{i}").write_text("in the way\n")


def fix_line(work, i):
    (work / "uncals" / f"v{i}").unlink()
# ---------------------------------------------------------------------------


@pytest.fixture
def chain(tmp_path, offline_env):
    """Run files of the two stages in tmp/batch, the working directory tmp/."""
    (tmp_path / "calibrated").mkdir()
    batch = tmp_path / "batch"
    write_run_file(str(batch / f"{STAGE_A}.run"), STAGE_A,
                   [stage_a(i) for i in range(1, NLINES + 1)], str(tmp_path))
    write_run_file(str(batch / f"{STAGE_B}.run"), STAGE_B,
                   [stage_b(i) for i in range(1, NLINES + 1)], str(tmp_path))
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
    assert [line.command for _, line in rerun.lines] == [stage_a(BROKEN).command]

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
        for output in stage_b(i).outputs:
            check_fits(work / output, extensions=("SCI", "DQ"))
    assert not (batch / f"{STAGE_A}.rerun.run").exists()
    # The lines that had succeeded ran once, in the first job; the fixed one in the second.
    runfile = read_run_file(str(batch / f"{STAGE_A}.run"))
    jobs = {i: accounting.read_record(accounting.record_paths(runfile, stage_a(i))[0])["job"]
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
