"""stage2/image2.py: calwebb_image2 through strun on one rate file, on a small simulated exposure."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

from ceers_nircam import history

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.pipeline


def _image2(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "stage2", "image2.py"), *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def rate(offline_env, tmp_path_factory):
    """A SUB320 NRCB1 F200W exposure through Detector1 (the stage-2 input)."""
    from jwst.pipeline import Detector1Pipeline

    from ceers_nircam.cli import quiet_loggers
    from ceers_nircam.offline.simulate import SimulationConfig, simulate

    out = tmp_path_factory.mktemp("stage2")
    config = SimulationConfig(detectors=("NRCB1",), filters=("F200W",), ndithers=1, ngroups=4,
                              subarray="SUB320", density=100.0)
    uncal = simulate(config, str(out / "uncal"))[0]
    with quiet_loggers("stpipe", "jwst", "stcal", "CRDS"):
        Detector1Pipeline.call(uncal, output_dir=str(out / "calibrated"), save_results=True)
    return str(out / "calibrated" / os.path.basename(uncal).replace("_uncal", "_rate"))


def test_cal_file_from_strun_with_resample_skipped(rate, tmp_path):
    result = _image2(rate, "--output_dir", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    cal = tmp_path / os.path.basename(rate).replace("_rate", "_cal")
    parfile = tmp_path / f"image2_{__import__('jwst').__version__}.asdf"
    assert sorted(os.listdir(tmp_path)) == sorted([cal.name, parfile.name])  # no i2d, no leftovers
    with datamodels.ImageModel(str(cal)) as model, datamodels.ImageModel(rate) as before:
        for step in ("assign_wcs", "flat_field", "photom"):
            assert getattr(model.meta.cal_step, step) == "COMPLETE", step
        assert model.meta.cal_step.resample == "SKIPPED"
        assert model.meta.bunit_data == "MJy/sr"
        assert model.data.shape == before.data.shape == (320, 320)
        ratio = np.nanmedian(model.data / before.data)
        assert ratio == pytest.approx(model.meta.photometry.conversion_megajanskys, rel=0.05)
        entry = history.entries(model, "image2")
        assert len(entry) == 1 and f"parameter_file={parfile.name}" in entry[0]


def test_bare_name_is_looked_for_in_input_dir(rate, tmp_path):
    result = _image2(os.path.basename(rate), "--input_dir", os.path.dirname(rate), "--output_dir", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / os.path.basename(rate).replace("_rate", "_cal")).exists()


def test_a_given_parameter_file_is_used(rate, tmp_path):
    from ceers_nircam import pipeline

    parfile = pipeline.write_parameter_file(pipeline.IMAGE2, str(tmp_path / "mine.asdf"))
    out = tmp_path / "out"
    assert _image2(rate, "--output_dir", out, "--parameter_file", parfile).returncode == 0
    assert os.listdir(out) == [os.path.basename(rate).replace("_rate", "_cal")]


def _copy_with(rate, tmp_path, name, **cards):
    path = shutil.copy(rate, tmp_path / name)
    for key, value in cards.items():
        fits.setval(path, key, value=value)
    return path


@pytest.mark.parametrize("case, expect", [
    ("other instrument", "instrument is MIRI, expected NIRCAM"),
    ("not a rate file", "expected a file ending in _rate.fits"),
    ("missing", "no such file"),
    ("truncated", "not a readable FITS file"),
    ("broken parameter file", "strun bad.asdf failed"),
])
def test_bad_input_is_one_line_error_and_no_cal(rate, tmp_path, case, expect):
    name = os.path.basename(rate)
    extra = []
    if case == "other instrument":
        path = _copy_with(rate, tmp_path, name, INSTRUME="MIRI")
    elif case == "not a rate file":
        path = _copy_with(rate, tmp_path, name.replace("_rate", "_cal"))
    elif case == "missing":
        path = str(tmp_path / name)
    elif case == "truncated":
        path = str(tmp_path / name)
        with open(rate, "rb") as src, open(path, "wb") as dst:
            dst.write(src.read(os.path.getsize(rate) // 2))
    else:
        path = rate
        (tmp_path / "bad.asdf").write_text("#ASDF 1.0.0\n%YAML 1.1\n--- {class: jwst.NoSuchPipeline}\n...\n")
        extra = ["--parameter_file", tmp_path / "bad.asdf"]
    out = tmp_path / "calibrated"
    result = _image2(path, "--output_dir", out, *extra)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ERROR: ") and expect in last, result.stderr[-1500:]
    assert not out.exists() or not [n for n in os.listdir(out) if n.endswith("_cal.fits") or n.startswith(".")]
