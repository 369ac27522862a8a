"""A rerun of each stage-1 script on its own output leaves the file bit-identical and says so."""

import hashlib
import os

import pytest

from stage1_helpers import copy_rate, run_script

pytestmark = pytest.mark.pipeline


def digest(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_snowball_wrapper_rerun_changes_nothing(nrcb4, caplog):
    rate, ramp = nrcb4.product("rate"), nrcb4.product("ramp")
    before = digest(rate), digest(ramp), os.path.getmtime(rate)
    assert run_script("snowball_wrapper", os.path.basename(nrcb4.uncal), "--input_dir",
                      nrcb4.directory, "--output_dir", os.path.dirname(rate)) == 0
    assert (digest(rate), digest(ramp), os.path.getmtime(rate)) == before
    assert "nothing to do" in caplog.text


@pytest.mark.parametrize("script,args,kept", [
    ("wispsub", ["--fit"], "_rate_prewisp.fits"),
    ("wispsub", ["--scale", "0.9"], "_rate_prewisp.fits"),
    ("remstriping", ["--save_patterns"], "_rate_pre1f.fits"),
])
def test_step_rerun_leaves_the_file_bit_identical(nrcb4, script, args, kept, tmp_path, caplog):
    path = copy_rate(nrcb4.product("rate"), tmp_path)
    original = digest(path)
    assert run_script(script, path, *args) == 0
    once = digest(path)
    assert once != original
    assert digest(path.replace("_rate.fits", kept)) == original
    products = {p: digest(tmp_path / p) for p in os.listdir(tmp_path)}
    caplog.clear()
    assert run_script(script, path, *args) == 0
    assert digest(path) == once
    assert {p: digest(tmp_path / p) for p in os.listdir(tmp_path)} == products
    assert "nothing to do" in caplog.text


def test_wisp_then_striping_then_both_again(nrcb4, tmp_path):
    # The CEERS order: each step once, whatever is run again after it.
    path = copy_rate(nrcb4.product("rate"), tmp_path)
    assert run_script("wispsub", path, "--fit") == 0
    assert run_script("remstriping", path) == 0
    done = digest(path)
    assert run_script("wispsub", path, "--fit") == 0
    assert run_script("remstriping", path) == 0
    assert digest(path) == done
