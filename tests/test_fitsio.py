"""Shared FITS I/O: atomic outputs, originals kept aside, one-line errors for bad input."""

import os

import numpy as np
import pytest
from astropy.io import fits

from ceers_nircam.cli import CeersError, run
from ceers_nircam.fitsio import atomic_path, check_fits, copy_aside, require_nircam, write_hdulist


def _image(path, instrument="NIRCAM", ext="SCI"):
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((4, 4), np.float32), name=ext)])
    hdul[0].header["INSTRUME"] = instrument
    hdul.writeto(path)
    return path


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.fits"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as fh:
                fh.write("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_only_when_complete(tmp_path):
    target = tmp_path / "out.fits"
    _image(target)
    write_hdulist(fits.HDUList([fits.PrimaryHDU(np.zeros(3))]), target)
    assert fits.getdata(target).shape == (3,)
    assert [p.name for p in tmp_path.iterdir()] == ["out.fits"]


def test_copy_aside_keeps_the_first_original(tmp_path):
    rate = _image(tmp_path / "x_rate.fits")
    first = copy_aside(rate, "_rate.fits", "_rate_pre1f.fits")
    with fits.open(rate, mode="update") as hdul:
        hdul["SCI"].data[:] = 7
    assert copy_aside(rate, "_rate.fits", "_rate_pre1f.fits") == first
    assert np.all(fits.getdata(first, "SCI") == 1)
    with pytest.raises(CeersError, match="expected a file ending in _cal.fits"):
        copy_aside(rate, "_cal.fits", "_cal_orig.fits")


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b"SIMPLE  = garbage" + b"\0" * 100), "not a readable FITS file"),
    (lambda p: _image(p, ext="DQ"), "missing SCI extension"),
])
def test_check_fits_names_the_problem(tmp_path, make, message):
    path = tmp_path / "in.fits"
    make(path)
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(CeersError, match=message):
        check_fits(path, ["SCI"])
    assert (path.read_bytes() if path.exists() else None) == before


def test_truncated_file_is_reported(tmp_path):
    path = _image(tmp_path / "in.fits")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 2000])
    with pytest.raises(CeersError, match="not a readable FITS file"):
        check_fits(path, ["SCI"])


def test_wrong_instrument_is_one_line_error(tmp_path, capsys):
    path = _image(tmp_path / "in.fits", instrument="MIRI")

    def main(argv):
        require_nircam(check_fits(path, ["SCI"]), path)

    assert run(main, []) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ERROR:") and "MIRI, expected NIRCAM" in err
    assert os.path.exists(path)
