"""Bad input to a stage-1 script: one ERROR line, a non-zero exit, the input untouched, nothing
written. One test per case and script."""

import os
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

from stage1_helpers import SCRIPTS, run_script


def small_rate(path, detector="NRCA3", filt="F150W", pupil="CLEAR"):
    """A 64x64 full-frame-corner rate file with the keywords the steps read."""
    model = datamodels.ImageModel(data=np.full((64, 64), 0.1, np.float32),
                                  err=np.full((64, 64), 0.01, np.float32),
                                  dq=np.zeros((64, 64), np.uint32))
    m = model.meta
    m.instrument.name, m.instrument.detector = "NIRCAM", detector
    m.instrument.filter, m.instrument.pupil = filt, pupil
    m.instrument.channel, m.instrument.module = "SHORT", detector[3]
    m.exposure.type, m.exposure.readpatt, m.exposure.noutputs = "NRC_IMAGE", "MEDIUM8", 1
    m.observation.date, m.observation.time = "2022-06-21", "12:00:00"
    m.subarray.name, m.subarray.xstart, m.subarray.ystart = "SUB64", 1, 1
    m.subarray.xsize = m.subarray.ysize = 64
    model.save(str(path))
    return str(path)


def small_uncal(path):
    model = datamodels.Level1bModel(data=np.zeros((1, 2, 64, 64), dtype=np.uint16))
    model.meta.instrument.name, model.meta.instrument.detector = "NIRCAM", "NRCA1"
    model.save(str(path))
    return str(path)


def not_nircam(path):
    with fits.open(path, mode="update") as hdul:
        hdul[0].header["INSTRUME"] = "NIRISS"


def drop(ext):
    def edit(path):
        with fits.open(path) as hdul:
            keep = fits.HDUList([h for h in hdul if h.name != ext])
            keep.writeto(path, overwrite=True)
    return edit


def corrupt(path):
    with open(path, "wb") as fh:
        fh.write(b"SIMPLE  =                    T / not really" + b"\x00" * 3000)


def truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)


RATE_CASES = {
    "not NIRCam": (not_nircam, "expected NIRCAM"),
    "missing SCI": (drop("SCI"), "missing SCI"),
    "missing DQ": (drop("DQ"), "missing DQ"),
    "missing ERR": (drop("ERR"), "missing ERR"),
    "corrupt FITS": (corrupt, "not a readable FITS"),
    "truncated FITS": (truncate, "not a readable FITS file (truncated)"),
}


def snapshot(directory):
    """Every file under ``directory`` with its bytes."""
    out = {}
    for dirpath, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, directory)] = fh.read()
    return out


def check_failure(capsys, directory, before, status, message):
    assert status != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR: ") and message in err[0], err
    assert snapshot(directory) == before


@pytest.mark.parametrize("case", list(RATE_CASES))
@pytest.mark.parametrize("script,args", [("wispsub", ["--fit"]), ("remstriping", [])])
def test_bad_rate(script, args, case, tmp_path, capsys, offline_env):
    make, message = RATE_CASES[case]
    path = small_rate(tmp_path / "jw01345001001_02201_00001_nrca3_rate.fits")
    make(path)
    before = snapshot(tmp_path)
    check_failure(capsys, tmp_path, before, run_script(script, path, *args), message)


@pytest.mark.parametrize("case", ["not NIRCam", "missing SCI", "corrupt FITS", "truncated FITS"])
def test_bad_uncal(case, tmp_path, capsys, offline_env):
    make, message = RATE_CASES[case]
    path = small_uncal(tmp_path / "jw01345001001_02201_00001_nrca1_uncal.fits")
    make(path)
    before = snapshot(tmp_path)
    status = run_script("snowball_wrapper", os.path.basename(path), "--input_dir", tmp_path,
                        "--output_dir", tmp_path / "out")
    check_failure(capsys, tmp_path, before, status, message)
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("script,args", [("wispsub", ["--fit"]), ("remstriping", []),
                                         ("snowball_wrapper", [])])
def test_missing_file(script, args, tmp_path, capsys):
    status = run_script(script, tmp_path / "jw_nothing_rate.fits", *args)
    check_failure(capsys, tmp_path, {}, status, "no such file")


@pytest.mark.parametrize("mode", [["--fit"], ["--scale", "0.5"]])
def test_missing_wisp_template(mode, tmp_path, capsys, offline_env):
    path = small_rate(tmp_path / "jw01345001001_02201_00001_nrca3_rate.fits")
    (tmp_path / "templates").mkdir()
    before = snapshot(tmp_path)
    status = run_script("wispsub", path, *mode, "--template_dir", tmp_path / "templates")
    check_failure(capsys, tmp_path, before, status, "no wisp template for NRCA3 F150W")


@pytest.mark.parametrize("script,args,filt,pupil", [
    ("remstriping", [], "F090W", "CLEAR"),  # no flat for this filter in the context
    ("wispsub", ["--fit"], "F150W", "F162M"),  # nor for this pupil
])
def test_missing_reference(script, args, filt, pupil, tmp_path, capsys, offline_env):
    path = small_rate(tmp_path / "jw01345001001_02201_00001_nrca3_rate.fits", filt=filt, pupil=pupil)
    before = snapshot(tmp_path)
    check_failure(capsys, tmp_path, before, run_script(script, path, *args), "no flat reference")


def test_wisp_mode_must_be_chosen(tmp_path, capsys, offline_env):
    path = small_rate(tmp_path / "jw01345001001_02201_00001_nrca3_rate.fits")
    before = snapshot(tmp_path)
    check_failure(capsys, tmp_path, before, run_script("wispsub", path), "--scale S or --fit")


@pytest.mark.parametrize("script,args,filt,message", [
    ("wispsub", ["--fit"], None, "not a readable FITS"),
    ("remstriping", [], None, "not a readable FITS"),
    ("snowball_wrapper", [], None, "not a readable FITS"),
    ("remstriping", [], "F090W", "no flat reference"),  # CRDS's own error log stays quiet
])
def test_command_line_error_is_one_line(script, args, filt, message, tmp_path, offline_env):
    # The real command, in a fresh interpreter: one ERROR line on stderr and exit status 1.
    path = small_rate(tmp_path / "jw01345001001_02201_00001_nrca3_rate.fits", filt=filt or "F150W")
    if filt is None:
        corrupt(path)
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, f"{script}.py"), path, *args],
                          capture_output=True, text=True, env={**os.environ}, timeout=300)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: ") and message in lines[0], lines
