"""Stage job scripts: SLURM settings, each launcher's block, and TACC's launcher interface.

TACC's launcher exists only on TACC's systems, so its script is checked for
every setting it needs, then run by bash with a stand-in ``paramrun`` that
follows the launcher's documented interface (run each line of
``$LAUNCHER_JOB_FILE`` in ``$LAUNCHER_WORKDIR`` and report success whatever
the lines did), which shows that the script's accounting catches a failed line.
"""

import os
import subprocess

import pytest

from ceers_nircam.batch import accounting as acc
from ceers_nircam.batch import slurm
from ceers_nircam.batch.runfile import Line, read_run_file, write_order, write_run_file
from ceers_nircam.cli import CeersError

STAND_IN_PARAMRUN = """#!/bin/bash
# Stand-in for TACC's paramrun: every line of the job file, in the work directory.
cd "$LAUNCHER_WORKDIR" || exit 1
while IFS= read -r line; do bash -c "$line"; done < "$LAUNCHER_JOB_FILE"
exit 0
"""


@pytest.fixture
def batch(tmp_path):
    """Two stages in tmp/batch, run in tmp/."""
    folder = tmp_path / "batch"
    write_run_file(str(folder / "first.run"), "first",
                   [Line("echo ok > a.txt", key="a", outputs=("a.txt",)),
                    Line("echo broken >&2; exit 6", key="b")], str(tmp_path))
    write_run_file(str(folder / "make_mosaics.run"), "make_mosaics",
                   [Line("echo ok > m.txt", key="m", outputs=("m.txt",))], str(tmp_path))
    write_order(str(folder), ["first.run", "make_mosaics.run"])
    return folder


def _scripts(batch, **settings):
    return [open(p).read() for p in slurm.write_job_scripts([str(batch)], slurm.SlurmSettings(**settings))]


def test_sbatch_options_and_per_stage_overrides(batch):
    first, mosaics = _scripts(batch, launcher="tacc", account="AST23016", partition="normal",
                              nodes=2, tasks=48, time="04:00:00", mem="180G",
                              stage_tasks=("make_mosaics=4",), stage_time=("make_mosaics=10:00:00",))
    for text, tasks, limit in ((first, 48, "04:00:00"), (mosaics, 4, "10:00:00")):
        header = [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]
        assert header == ["#SBATCH --job-name=" + ("ceers_01_first" if tasks == 48 else "ceers_02_make_mosaics"),
                          f"#SBATCH --output={batch}/logs/slurm/%x.%j.out", "#SBATCH --nodes=2",
                          f"#SBATCH --ntasks={tasks}", f"#SBATCH --time={limit}",
                          "#SBATCH --partition=normal", "#SBATCH --account=AST23016",
                          "#SBATCH --mem=180G"]
    assert (batch / "logs" / "slurm").is_dir()  # SLURM does not create the output folder
    chain = slurm.read_chain(str(batch))
    assert [os.path.basename(s) for s, _ in chain] == ["01_first.slurm", "02_make_mosaics.slurm"]
    assert [r for _, r in chain] == [str(batch / "first.run"), str(batch / "make_mosaics.run")]


def test_tacc_script_sets_what_the_launcher_needs(batch, tmp_path):
    text = _scripts(batch, launcher="tacc", nodes=2, tasks=48, sched="interleaved",
                    setup=("module load python3", "source ~/ceers/bin/activate"))[0]
    lines = text.splitlines()
    required = ["module load launcher",
                f"export LAUNCHER_WORKDIR={tmp_path}",
                'export LAUNCHER_JOB_FILE="$JOBFILE"',
                "export LAUNCHER_PPN=24",
                "export LAUNCHER_SCHED=interleaved",
                '"$LAUNCHER_DIR/paramrun"']
    stripped = [ln.strip() for ln in lines]
    for setting in required:
        assert setting in stripped, setting
    order = [stripped.index(s) for s in ("module load python3", "source ~/ceers/bin/activate")]
    order.append(next(i for i, ln in enumerate(stripped) if ln.startswith("JOBFILE=$(") and " prepare " in ln))
    order += [stripped.index(s) for s in required]
    assert order == sorted(order)
    assert " -m ceers_nircam.batch.job check " in lines[-1]  # the check decides the job's exit status
    assert f'RUNFILE="${{1:-{batch}/first.run}}"' in stripped
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


@pytest.mark.parametrize("cpus, preset, expected", [("48", None, ["2", "2", "2"]),
                                                    ("16", None, ["1", "1", "1"]),
                                                    ("48", "6", ["6", "2", "2"])])
def test_each_launched_line_gets_its_share_of_the_node(batch, cpus, preset, expected):
    # 48 tasks on 2 nodes: 24 lines side by side on a node, so a 48-core node gives each two
    # threads; a node with fewer cores than lines still gives one; a user's own value stays.
    text = _scripts(batch, launcher="tacc", nodes=2, tasks=48)[0]
    block = [ln for ln in text.splitlines() if "THREADS" in ln]
    script = "\n".join(([f"export OMP_NUM_THREADS={preset}"] if preset else []) + block
                       + [f"echo ${name}" for name in acc.THREAD_VARIABLES])
    env = {"PATH": os.environ["PATH"], "SLURM_CPUS_ON_NODE": cpus}
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == expected


def test_tacc_script_fails_the_job_on_a_failed_line(batch, tmp_path):
    launcher = tmp_path / "launcher"
    launcher.mkdir()
    (launcher / "paramrun").write_text(STAND_IN_PARAMRUN)
    (launcher / "paramrun").chmod(0o755)
    module = f'module() {{ [ "$*" = "load launcher" ] && export LAUNCHER_DIR={launcher}; }}'
    scripts = slurm.write_job_scripts([str(batch)], slurm.SlurmSettings(launcher="tacc", setup=(module,)))
    done = subprocess.run(["bash", scripts[0]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "first line 2 FAILED (exit 6 " in done.stdout and "| broken" in done.stdout
    assert (tmp_path / "a.txt").exists()
    rerun = read_run_file(str(batch / "first.rerun.run"))
    assert [line.command for _, line in rerun.lines] == ["echo broken >&2; exit 6"]
    done = subprocess.run(["bash", scripts[1]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("launcher, nodes, expected", [
    ("pylauncher", 1, '-m ceers_nircam.batch.job pylauncher "$JOBFILE" --slots "${SLURM_NTASKS:-4}" --kind local'),
    ("pylauncher", 3, '-m ceers_nircam.batch.job pylauncher "$JOBFILE" --slots "${SLURM_NTASKS:-4}" --kind classic'),
    ("parallel", 1, 'parallel --will-cite --jobs "${SLURM_NTASKS:-4}" --halt never '
                    '--joblog "$JOBFILE.joblog" < "$JOBFILE"'),
    ("parallel", 3, 'parallel --will-cite --jobs "${SLURM_NTASKS:-4}" --halt never '
                    '--joblog "$JOBFILE.joblog" srun --exact -N1 -n1 -c1 bash -c {} < "$JOBFILE"'),
])
def test_launcher_blocks(batch, launcher, nodes, expected):
    text = _scripts(batch, launcher=launcher, nodes=nodes)[0]
    assert any(ln.strip().endswith(expected) for ln in text.splitlines()), text
    assert "LAUNCHER_JOB_FILE" not in text
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_line_time_limit_reaches_the_wrapped_lines(batch):
    text = _scripts(batch, launcher="parallel", line_timeout=3600)[0]
    assert 'prepare "$RUNFILE" --timeout 3600)' in text


def test_stale_scripts_are_removed(batch):
    slurm.write_job_scripts([str(batch)], slurm.SlurmSettings())
    slurm.write_job_scripts([str(batch / "make_mosaics.run")], slurm.SlurmSettings())
    assert sorted(os.listdir(batch / "slurm")) == ["01_make_mosaics.slurm", "chain.txt"]


@pytest.mark.parametrize("settings, message", [
    (dict(stage_tasks=("make_mosaics",)), "expected STAGE=VALUE"),
    (dict(stage_tasks=("make_mosaics=many",)), "bad value 'many'"),
])
def test_bad_per_stage_values(batch, settings, message):
    with pytest.raises(CeersError, match=message):
        slurm.write_job_scripts([str(batch)], slurm.SlurmSettings(**settings))


def test_submission_errors(batch, tmp_path):
    slurm.write_job_scripts([str(batch)], slurm.SlurmSettings())
    chain = slurm.read_chain(str(batch))
    with pytest.raises(CeersError, match="not found: submit from a machine with SLURM"):
        slurm.submit_chain(chain, slurm.SubmitOptions(sbatch=str(tmp_path / "no-sbatch")))
    with pytest.raises(CeersError, match="unknown stage 'image2'; the chain has first, make_mosaics"):
        slurm.submit_chain(chain, slurm.SubmitOptions(from_stage="image2"))
    with pytest.raises(CeersError, match="no chain file"):
        slurm.read_chain(str(tmp_path))
