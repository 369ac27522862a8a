"""Per-line accounting and the local runner, on real (short) commands.

Lines write FITS files with astropy, edit them in place with a history entry
as the stage scripts do, fail with an exit code, or leave nothing behind.
"""

import io
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from ceers_nircam.batch import accounting as acc
from ceers_nircam.batch import job, runner
from ceers_nircam.batch.runfile import Line, read_run_file, write_order, write_run_file
from ceers_nircam.cli import CeersError

PY = shlex.quote(sys.executable)


def write_fits(name, history_step=None):
    """A command that writes a small FITS file (and a history entry, like an in-place step)."""
    code = ("import numpy as np, sys; from astropy.io import fits; from ceers_nircam import history; "
            "h = fits.PrimaryHDU(np.ones((8, 8), np.float32)); "
            + (f"h.header['HISTORY'] = history.describe({history_step!r}, {{'scale': 0.5}}); "
               if history_step else "")
            + "h.writeto(sys.argv[1], overwrite=True)")
    return f"{PY} -c {shlex.quote(code)} {shlex.quote(name)}"


def counted(name, command):
    """``command``, also appending a line to ``<name>.count`` each time it runs."""
    return f"echo run >> {name}.count && {command}"


def runs(work, name):
    path = work / f"{name}.count"
    return len(path.read_text().splitlines()) if path.exists() else 0


def make_run(work, lines, stage="demo", name=None):
    path = work / "batch" / f"{name or stage}.run"
    write_run_file(str(path), stage, lines, str(work))
    return str(path)


def states_of(path):
    return {st.line.key: st for st in acc.stage_states(read_run_file(path))}


MIXED = [
    Line(counted("a", write_fits("a.fits")), key="a", outputs=("a.fits",)),
    Line("echo 'bad input' >&2; exit 3", key="b", outputs=("b.fits",)),
    Line("echo 'all fine, I promise'", key="c", outputs=("c.fits",)),
    Line(counted("d", "echo '{\"members\": []}' > d.json"), key="d", outputs=("d.json",)),
]


def test_each_line_gets_a_log_and_a_record(tmp_path):
    path = make_run(tmp_path, MIXED)
    runfile, states = runner.run_file(path, workers=2)
    got = {st.line.key: (st.state, st.record["exit_code"]) for st in states}
    assert got == {"a": ("done", 0), "b": ("failed", 3), "c": ("failed", 0), "d": ("done", 0)}
    b = states[1].record
    assert b["command"] == MIXED[1].command and b["line"] == 2 and b["wall_s"] >= 0
    assert "bad input" in open(b["log"]).read()
    assert states[2].reason == f"exit 0 but {tmp_path / 'c.fits'}: no such file"
    rerun = read_run_file(str(tmp_path / "batch" / "demo.rerun.run"))
    assert [line.command for _, line in rerun.lines] == [MIXED[1].command, MIXED[2].command]
    assert rerun.stage == "demo" and rerun.workdir == str(tmp_path)
    assert [line.outputs for _, line in rerun.lines] == [("b.fits",), ("c.fits",)]


def test_a_second_run_skips_complete_lines(tmp_path):
    path = make_run(tmp_path, MIXED)
    runner.run_file(path, workers=2)
    _, states = runner.run_file(path, workers=2)
    assert (runs(tmp_path, "a"), runs(tmp_path, "d")) == (1, 1)
    # The records of the runs that made the outputs are kept.
    assert [st.record["status"] for st in states] == ["done", "failed", "failed", "done"]
    (tmp_path / "made_elsewhere.fits").write_bytes((tmp_path / "a.fits").read_bytes())
    other = make_run(tmp_path, [Line("exit 9", key="e", outputs=("made_elsewhere.fits",))], "other")
    _, (state,) = runner.run_file(other)
    assert (state.state, state.record["status"]) == ("done", "skipped")
    runner.run_file(path, workers=2, force=True)
    assert (runs(tmp_path, "a"), runs(tmp_path, "d")) == (2, 2)


def test_in_place_steps_need_their_history_entry(tmp_path):
    lines = [Line(write_fits("x_rate.fits", "wispsub"), key="x", outputs=("x_rate.fits",),
                  history="wispsub"),
             Line(write_fits("y_rate.fits"), key="y", outputs=("y_rate.fits",), history="wispsub")]
    _, states = runner.run_file(make_run(tmp_path, lines), workers=2)
    assert [st.state for st in states] == ["done", "failed"]
    assert states[1].reason == f"exit 0 but {tmp_path / 'y_rate.fits'}: no 'wispsub' history entry"


def test_a_truncated_fits_output_is_not_complete(tmp_path):
    command = write_fits("t.fits") + " && head -c 3000 t.fits > t2.fits && mv t2.fits t.fits"
    _, (state,) = runner.run_file(make_run(tmp_path, [Line(command, key="t", outputs=("t.fits",))]))
    assert state.state == "failed" and "t.fits: not a readable FITS file" in state.reason


def test_a_line_past_its_time_limit_is_killed(tmp_path):
    path = make_run(tmp_path, [Line("sleep 30", key="slow")])
    _, (state,) = runner.run_file(path, timeout=1.0)
    assert (state.state, state.record["exit_code"], state.reason) == ("failed", 124, "timed out after 1 s")
    assert state.record["wall_s"] < 29  # cut short, not slept to the end


def test_outputs_completed_after_a_failure_count_as_done(tmp_path):
    # A line fails; an edited copy of it (say a different threshold) later makes its output.
    path = make_run(tmp_path, [Line("exit 2", key="e", outputs=("e.fits",))])
    runner.run_file(path)
    assert states_of(path)["e"].state == "failed"
    time.sleep(0.05)
    edited = make_run(tmp_path, [Line(write_fits("e.fits"), key="e", outputs=("e.fits",))],
                      name="demo.rerun")
    runner.run_file(edited)
    assert states_of(path)["e"].state == "done"


def test_outputs_removed_after_success_count_as_not_run(tmp_path):
    path = make_run(tmp_path, [Line(write_fits("r.fits"), key="r", outputs=("r.fits",))])
    runner.run_file(path)
    os.unlink(tmp_path / "r.fits")
    state = states_of(path)["r"]
    assert state.state == "not run" and "incomplete since its last run" in state.reason


def test_a_chain_stops_after_a_stage_with_failures(tmp_path):
    first = make_run(tmp_path, [Line("exit 1", key="f"), Line("true", key="g")], stage="one")
    make_run(tmp_path, [Line("echo ok > two.txt", key="h", outputs=("two.txt",))], stage="two")
    write_order(str(tmp_path / "batch"), ["one.run", "two.run"])
    results = runner.run_chain([str(tmp_path / "batch")], workers=2)
    assert [rf.stage for rf, _ in results] == ["one"]
    assert not (tmp_path / "two.txt").exists()
    assert results[0][0].path == first
    results = runner.run_chain([str(tmp_path / "batch")], workers=2, keep_going=True)
    assert [rf.stage for rf, _ in results] == ["one", "two"] and (tmp_path / "two.txt").exists()


def test_progress_reports_counts_elapsed_and_estimate(tmp_path, caplog):
    lines = [Line(f"sleep 0.3; echo ok > p{i}", key=f"p{i}", outputs=(f"p{i}",)) for i in range(5)]
    lines.append(Line("sleep 0.3; exit 4", key="bad"))
    with caplog.at_level(logging.INFO, logger="ceers.batch.runner"):
        runner.run_file(make_run(tmp_path, lines), workers=2, interval=0.2)
    messages = [r.getMessage() for r in caplog.records]
    assert any("running" in m and "left" in m and "elapsed" in m for m in messages)
    assert "demo: 5/6 done, 1 failed, 0 running" in messages[-2]
    assert any(m.startswith("demo line 6 failed (exit 4)") for m in messages)


@pytest.mark.parametrize("workers, together", [(1, 1), (3, 3)])
def test_workers_run_lines_at_the_same_time(tmp_path, workers, together):
    lines = [Line(f"sleep 1; echo ok > w{i}", key=f"w{i}", outputs=(f"w{i}",)) for i in range(3)]
    _, states = runner.run_file(make_run(tmp_path, lines), workers=workers)
    assert all(st.state == "done" for st in states)
    spans = [(st.record["started"], st.record["ended"]) for st in states]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == together  # lines running at once, from their recorded start and end


@pytest.mark.parametrize("workers, threads, preset, expected", [
    (2, 0, None, max(1, (os.cpu_count() or 1) // 2)),  # the cores shared among the workers
    (1, 0, None, os.cpu_count() or 1),
    (2, 3, None, 3),                                    # asked for
    (2, 0, "5", 5),                                     # the user's own setting is kept
])
def test_each_line_gets_its_share_of_the_cores(tmp_path, monkeypatch, workers, threads, preset,
                                               expected):
    for name in acc.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if preset:
        monkeypatch.setenv("OMP_NUM_THREADS", preset)
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", preset)
        monkeypatch.setenv("MKL_NUM_THREADS", preset)
    show = " ".join(f"${name}" for name in acc.THREAD_VARIABLES)
    lines = [Line(f"echo {show} > t{i}", key=f"t{i}", outputs=(f"t{i}",)) for i in range(2)]
    _, states = runner.run_file(make_run(tmp_path, lines), workers=workers, threads=threads)
    assert all(st.state == "done" for st in states)
    for i in range(2):
        assert (tmp_path / f"t{i}").read_text().split() == [str(expected)] * 3


def test_prepare_writes_only_the_lines_not_done(tmp_path):
    path = make_run(tmp_path, MIXED)
    runner.run_file(path, workers=2)
    jobfile, todo, total = job.prepare(path, str(tmp_path / "jobfile.txt"))
    assert (todo, total) == (2, 4)
    lines = (tmp_path / "jobfile.txt").read_text().splitlines()
    assert [shlex.split(ln)[-2:] for ln in lines] == [[path, "2"], [path, "3"]]
    assert job.check(path, out=io.StringIO()) == 1


def test_the_wrapper_passes_the_exit_code_and_survives_a_bare_exit(tmp_path):
    path = make_run(tmp_path, [Line("exit 7", key="x"), Line("true", key="y")])
    for number, code in ((1, 7), (2, 0)):
        done = subprocess.run([sys.executable, "-m", "ceers_nircam.batch.job", "line", path,
                               str(number)], capture_output=True, text=True, timeout=60)
        assert done.returncode == code, done.stderr
    out = io.StringIO()
    assert job.check(path, out=out) == 1
    assert "demo line 1 FAILED (exit 7 " in out.getvalue()


def test_pylauncher_finishes_although_a_line_runs_a_bare_exit(tmp_path):
    # Given "exit 3" itself as a task, pylauncher waits for ever; wrapped, the line just fails.
    path = make_run(tmp_path, [Line("exit 3", key="x"), Line("echo ok > y.txt", key="y",
                                                            outputs=("y.txt",))])
    jobfile, todo, _ = job.prepare(path, str(tmp_path / "jobfile.txt"))
    done = subprocess.run([sys.executable, "-m", "ceers_nircam.batch.job", "pylauncher", jobfile,
                           "--slots", "2"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {k: st.state for k, st in states_of(path).items()} == {"x": "failed", "y": "done"}
    assert sorted(os.listdir(tmp_path)) == ["batch", "jobfile.txt", "jobfile.txt.pylauncher", "y.txt"]


def test_a_terminated_wrapper_stops_its_command_and_records_it(tmp_path):
    path = make_run(tmp_path, [Line("sleep 60", key="long")])
    proc = subprocess.Popen([sys.executable, "-m", "ceers_nircam.batch.job", "line", path, "1"])
    record_path = acc.record_paths(read_run_file(path), Line("sleep 60", key="long"))[0]
    deadline = time.monotonic() + 30
    while (acc.read_record(record_path) or {}).get("status") != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    with open(record_path) as fh:
        record = json.load(fh)
    assert (record["status"], record["exit_code"], record["reason"]) == (
        "failed", 128 + signal.SIGTERM, "killed by signal 15")


def test_a_line_whose_runner_vanished_is_failed_not_running(tmp_path):
    path = make_run(tmp_path, [Line("sleep 2", key="gone")])
    proc = subprocess.Popen([sys.executable, "-m", "ceers_nircam.batch.job", "line", path, "1"])
    record_path = acc.record_paths(read_run_file(path), Line("sleep 2", key="gone"))[0]
    deadline = time.monotonic() + 30
    while (acc.read_record(record_path) or {}).get("status") != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert states_of(path)["gone"].state == "running"
    proc.kill()  # no chance to record
    proc.wait()
    state = states_of(path)["gone"]
    assert state.state == "failed" and state.reason.startswith("interrupted: its runner (pid ")


@pytest.mark.parametrize("content, message", [
    ("echo 'unbalanced\n", r"demo.run:1: malformed line \(No closing quotation\)"),
    ("# fine\n\necho ok\necho \"open\n", r"demo.run:4: malformed line"),
])
def test_malformed_lines_are_named_by_file_and_line(tmp_path, content, message):
    (tmp_path / "demo.run").write_text(content)
    with pytest.raises(CeersError, match=message):
        read_run_file(str(tmp_path / "demo.run"))


def test_a_missing_run_file_is_an_error(tmp_path):
    with pytest.raises(CeersError, match="no such run file"):
        runner.run_chain([str(tmp_path / "nothere.run")])
