"""``ceers-offline``: the environment a user sources is the one the tests use."""

import subprocess
import sys

from ceers_nircam.offline import references
from ceers_nircam.offline.cli import environment


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ceers_nircam.offline.cli", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_env_prints_the_crds_settings_of_a_built_directory(offline_dir):
    proc = _run("env", offline_dir)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.removeprefix("export ").split("=", 1) for line in proc.stdout.splitlines())
    assert lines["CRDS_MODE"] == "local"
    assert lines["CRDS_CONTEXT"] == references.PMAP
    assert "serverless" in lines["CRDS_SERVER_URL"]
    assert lines["CRDS_PATH"] == environment(offline_dir)["CRDS_PATH"]
    with open(f"{offline_dir}/ceers_env.sh") as fh:
        sourced = fh.read()
    assert f"export CRDS_PATH={lines['CRDS_PATH']}" in sourced


def test_env_of_an_unbuilt_directory_is_a_one_line_error(tmp_path):
    proc = _run("env", str(tmp_path / "nowhere"))
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("ERROR:") and "no offline environment" in proc.stderr


def test_sourced_environment_lets_a_fresh_shell_resolve_references(offline_dir):
    code = ("import crds; r = crds.getreferences({'META.INSTRUMENT.NAME': 'NIRCAM', "
            "'META.INSTRUMENT.DETECTOR': 'NRCB3', 'META.SUBARRAY.NAME': 'FULL', "
            "'META.OBSERVATION.DATE': '2022-12-20', 'META.OBSERVATION.TIME': '00:00:00'}, "
            "reftypes=['gain', 'dark'], observatory='jwst'); print(sorted(r.values()))")
    proc = subprocess.run(["bash", "-c", f"source {offline_dir}/ceers_env.sh && "
                                         f"{sys.executable} -c \"{code}\""],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert proc.returncode == 0, proc.stderr
    assert "jwst_nircam_dark_synth.fits" in proc.stdout and "gain_short_synth" in proc.stdout
