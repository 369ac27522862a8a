"""Mosaic grids: the DR0.5 grids, derived windows, grids read back from headers, and the
strun parameter file of the mosaics."""

import json

import numpy as np
import pytest

from ceers_nircam import survey
from ceers_nircam.cli import CeersError
from ceers_nircam.steps import mosaic


@pytest.mark.parametrize("name", list(survey.MOSAIC_GRIDS))
def test_dr05_grid_is_the_survey_grid(name):
    grid = mosaic.Grid.dr05(name)
    w, ref = grid.wcs(), survey.grid_wcs(name)
    np.testing.assert_allclose(w.wcs.crpix, ref.wcs.crpix)
    np.testing.assert_allclose(w.wcs.cd, ref.wcs.cd)
    assert w.pixel_shape == ref.pixel_shape == tuple(survey.MOSAIC_GRIDS[name][1])
    # At the tangent point the y axis points at position angle -49.7 deg (east of north).
    x, y = grid.crpix
    ra0, dec0 = w.all_pix2world(x, y, 0)
    ra1, dec1 = w.all_pix2world(x, y + 1.0, 0)
    pa = np.degrees(np.arctan2((ra1 - ra0) * np.cos(np.deg2rad(dec0)), dec1 - dec0))
    assert pa == pytest.approx(-49.7, abs=1e-4)


def test_unknown_grid_is_an_error():
    with pytest.raises(CeersError, match="unknown mosaic grid 'nircam5'"):
        mosaic.Grid.dr05("nircam5")


def _footprint(w, x0, y0, x1, y1):
    return w.all_pix2world(np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]), 0)


def test_cover_grid_is_a_whole_pixel_window_of_the_frame():
    frame = mosaic.Grid.dr05("nircam1")
    w = frame.wcs()
    feet = [_footprint(w, 1000.3, 500.2, 3000.7, 2100.9), _footprint(w, 2500.5, 1800.1, 4100.2, 3300.6)]
    grid = mosaic.cover_grid(feet, frame, margin=20)
    assert grid.offset_in(frame) == (1000 - 20, 500 - 20)
    assert grid.shape == (4101 + 20 - 980 + 1, 3301 + 20 - 480 + 1)
    assert grid.name.startswith("custom-")
    # Every corner falls inside the window, and the same images give the same grid.
    for ra, dec in feet:
        x, y = grid.wcs().all_world2pix(ra, dec, 0)
        assert np.all((x >= 0) & (x <= grid.shape[0] - 1) & (y >= 0) & (y <= grid.shape[1] - 1))
    assert mosaic.cover_grid(feet, frame, margin=20) == grid


def test_grid_file_round_trip(tmp_path):
    grid = mosaic.Grid.dr05("nircam2").replace(shape=(2000, 1000))
    assert grid.name.startswith("custom-")
    path = grid.write(str(tmp_path / "grid.json"))
    assert mosaic.Grid.read(path) == grid
    assert json.load(open(path))["crpix"] == list(grid.crpix)
    with pytest.raises(CeersError, match="not a grid file"):
        (tmp_path / "bad.json").write_text("[1, 2]")
        mosaic.Grid.read(str(tmp_path / "bad.json"))


def test_grid_read_back_from_a_header():
    grid = mosaic.Grid.dr05("nircam3")
    header = grid.wcs().to_header()
    header["NAXIS1"], header["NAXIS2"] = grid.shape
    back = mosaic.grid_of_header(header)
    assert mosaic.same_grid(back, grid)
    assert back.rotation == pytest.approx(-49.7)
    assert back.pixel_scale == pytest.approx(0.03)
    assert mosaic.grid_owner(back) == ("nircam3", True)


def test_check_pointing():
    mosaic.check_pointing(mosaic.Grid.dr05("nircam1"), "nircam1", "a.fits")
    with pytest.raises(CeersError, match="on the nircam2 grid, not nircam1's"):
        mosaic.check_pointing(mosaic.Grid.dr05("nircam2"), "nircam1", "a.fits")
    frame = mosaic.Grid.dr05("nircam1")
    window = mosaic.cover_grid([_footprint(frame.wcs(), 5000, 2000, 6000, 3000)], frame)
    mosaic.check_pointing(window, "nircam1", "a.fits")
    with pytest.raises(CeersError, match="lies outside nircam6's grid"):
        mosaic.check_pointing(window, "nircam6", "a.fits")


@pytest.mark.parametrize("product,pointing", [("ceers_nircam1_f150w", "nircam1"),
                                              ("ceers_nircam2b_f200w", "nircam2"),
                                              ("my_mosaic", None)])
def test_pointing_of_a_product(product, pointing):
    assert mosaic.pointing_of(product) == pointing


def test_parameter_file_drizzles_onto_the_grid(tmp_path):
    from ceers_nircam import pipeline

    grid = mosaic.Grid.dr05("nircam1")
    path = pipeline.write_parameter_file(mosaic.mosaic_settings(grid), str(tmp_path / "p.asdf"))
    pipe = pipeline.load_parameter_file(path)
    r = pipe.resample
    assert (r.kernel, r.pixfrac, r.weight_type, r.pixel_scale) == ("square", 1.0, "ivm", 0.03)
    assert list(r.crpix) == [26678.5, -724.5] and list(r.output_shape) == [10600, 4800]
    assert list(r.crval) == [214.825, 52.825] and r.rotation == -49.7
    for step in ("tweakreg", "skymatch", "outlier_detection", "source_catalog"):
        assert getattr(pipe, step).skip, step
    assert not r.skip
