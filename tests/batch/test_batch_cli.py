"""The commands in batch_scripts/: bad input is one ``ERROR:`` line and a non-zero exit."""

import os
import subprocess
import sys

import pytest
from batch_helpers import ROOT

SCRIPTS = os.path.join(ROOT, "batch_scripts")
ROOT_UNCAL = "jw01345001001_02201_00001_nrca1"


def _run(script, *args, cwd):
    return subprocess.run([sys.executable, os.path.join(SCRIPTS, script), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture
def work(tmp_path):
    (tmp_path / "uncals").mkdir()
    (tmp_path / "bad.run").write_text("echo fine\necho 'unbalanced\n")
    (tmp_path / "ceers").mkdir()
    (tmp_path / "ceers" / "remstriping.run").write_text(
        f"python remstriping.py {ROOT_UNCAL}_rate.fits --thresh 0.8\nrm -rf calibrated\n")
    (tmp_path / "values.csv").write_text(f"exposure,thresh\n{ROOT_UNCAL},lots\n")
    (tmp_path / "batch").mkdir()
    return tmp_path


@pytest.mark.parametrize("script, args, message", [
    ("make_batch.py", ["7"], "unknown pointing '7'; known pointings are 1, 2, 3, 6, 9 or all"),
    ("make_batch.py", ["1", "--table", "missing.csv"], "missing.csv: no such table"),
    ("make_batch.py", ["1", "--table", "values.csv"], "values.csv:2: thresh 'lots' is not a number"),
    ("make_batch.py", ["1", "--uncal_dir", "raw"], "raw: no such directory of uncal files"),
    ("make_batch.py", ["1"], "no exposures of pointing nircam1 in ./uncals"),
    ("run_local.py", ["bad.run"], "bad.run:2: malformed line (No closing quotation): echo 'unbalanced"),
    ("run_local.py", ["nothere.run"], "nothere.run: no such run file or batch directory"),
    ("batch_status.py", ["bad.run"], "bad.run:2: malformed line"),
    ("batch_status.py", ["batch"], "batch: no stages.txt here (not a batch directory)"),
    ("import_ceers_runs.py", ["ceers"], "remstriping.run:2: not a CEERS batch command: rm -rf calibrated"),
    ("import_ceers_runs.py", ["batch"], "batch: no .run files here"),
    ("make_slurm.py", ["nothere.run"], "nothere.run: no such run file or batch directory"),
    ("submit_chain.py", ["batch"], "no chain file (write the job scripts with make_slurm.py first)"),
])
def test_bad_input_is_one_error_line(work, script, args, message):
    done = _run(script, *args, cwd=work)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: ") and message in lines[0], done.stderr


def test_commands_from_generation_to_status(work):
    from astropy.io import fits
    header = fits.Header({"FILTER": "F150W"})
    fits.PrimaryHDU(header=header).writeto(work / "uncals" / f"{ROOT_UNCAL}_uncal.fits")
    (work / "noscripts").mkdir()
    done = _run("make_batch.py", "1", "--stages", "detector1_and_snowballs", "image2",
                "--scripts_dir", "noscripts", cwd=work)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [os.path.join("batch", "nircam1", f"{s}.run")
                                   for s in ("detector1_and_snowballs", "image2")]
    # The stage scripts are not in noscripts/: the first stage fails (python: exit 2), the chain stops.
    done = _run("run_local.py", "batch/nircam1", "--workers", "2", cwd=work)
    assert done.returncode == 1
    assert "detector1_and_snowballs line 1 FAILED (exit 2 " in done.stdout
    assert "image2" not in done.stdout and "later stages not started" in done.stderr
    done = _run("batch_status.py", "batch/nircam1", cwd=work)
    assert done.returncode == 1
    table = done.stdout.splitlines()[:3]
    assert table[1].split() == ["detector1_and_snowballs", "1", "0", "1", "0", "0"]
    assert table[2].split() == ["image2", "1", "0", "0", "0", "1"]
    assert "rerun file: " in done.stdout
