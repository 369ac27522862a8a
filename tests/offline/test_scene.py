"""The CEERS-deep scene: counts, colours, stars, clustering, rendering and sky."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from ceers_nircam.offline import scene

RA, DEC = 214.85, 52.86


@pytest.fixture(scope="module")
def field():
    return scene.generate_catalog(RA, DEC, radius_arcmin=3.0, seed=11)


def _area(radius=3.0):
    return np.pi * radius**2


def test_galaxy_counts_reach_800_per_arcmin2_at_29_5_with_the_faint_end_slope(field):
    gal = field[field["kind"] == "galaxy"]
    assert len(gal) / _area() == pytest.approx(800, rel=0.05)
    assert gal["mag"].max() <= 29.5
    # Cumulative counts rise by 10^(0.2 dm) faint of the break, 10^(0.32 dm) bright of it.
    n = {m: (gal["mag"] < m).sum() for m in (20, 22, 24, 27, 29.5)}
    assert np.log10(n[29.5] / n[27]) / 2.5 == pytest.approx(0.20, abs=0.02)
    assert np.log10(n[24] / n[20]) / 4.0 == pytest.approx(0.32, abs=0.04)


def test_stars_are_at_most_one_per_arcmin2(field):
    nstar = (field["kind"] == "star").sum() / _area()
    assert 0.3 < nstar <= 1.0


def test_galaxies_have_colours(field):
    gal = field[field["kind"] == "galaxy"]
    colour = gal["mag_f150w"] - gal["mag_f444w"]
    assert np.std(colour) > 0.3  # magnitudes differ between filters, source by source
    assert np.median(colour) > 0  # most galaxies are brighter at 4.4 um than at 1.5 um
    star = field[field["kind"] == "star"]
    assert np.all(star["mag_f444w"] > star["mag_f150w"])  # stars are blue in the near-IR


def test_galaxies_cluster_on_arcsecond_scales(field):
    # Pairs closer than 3 arcsec, over what the same number of uniform points gives.
    xy = np.column_stack([(field["ra"] - RA) * np.cos(np.deg2rad(DEC)), field["dec"] - DEC]) * 3600
    rng = np.random.default_rng(0)
    r = 180.0 * np.sqrt(rng.uniform(0, 1, len(xy)))
    phi = rng.uniform(0, 2 * np.pi, len(xy))
    uniform = np.column_stack([r * np.cos(phi), r * np.sin(phi)])
    pairs = cKDTree(xy).count_neighbors(cKDTree(xy), 3.0) - len(xy)
    expected = cKDTree(uniform).count_neighbors(cKDTree(uniform), 3.0) - len(xy)
    assert pairs > 1.15 * expected


def test_reference_catalog_keeps_hst_columns(field):
    ref = scene.reference_catalog(field, seed=1)
    assert ref.colnames == ["RA", "DEC", "MAG", "rh"]
    assert len(ref) == (field["mag"] < 26.0).sum()


@pytest.mark.parametrize("r_eff, n", [(0.8, 4.0), (1.5, 1.0), (4.0, 2.5), (12.0, 1.0)])
def test_galaxy_stamps_hold_their_share_of_the_light_unnormalised(r_eff, n):
    stamp, half = scene.galaxy_stamp(0.3, -0.2, r_eff, n, 0.6, 30.0)
    assert stamp.shape == (2 * half + 1, 2 * half + 1)
    assert 0.95 < stamp.sum() <= 1.0  # 8 r_eff of a Sersic profile: almost all, never more
    # The pixel integration has converged: a 41 x 41 grid per pixel gives the same stamp.
    fine = scene._pixel_means(0.3, -0.2, half, 41, r_eff, n, 0.6, 30.0)
    assert stamp.sum() == pytest.approx(fine.sum(), rel=0.005)
    assert np.abs(stamp - fine).max() < 0.01 * fine.max()


def test_sky_surface_has_the_stated_amplitude_and_mean():
    rng = np.random.default_rng(4)
    coeffs = scene.sky_coefficients(rng, 0.2, 0.04)
    sky = scene.sky_surface(0.2, coeffs, 2048)
    assert np.abs(sky / 0.2 - 1).max() == pytest.approx(0.04, rel=0.01)
    assert sky.mean() == pytest.approx(0.2, rel=1e-4)
    region = (slice(0, 320), slice(0, 320))
    np.testing.assert_array_equal(scene.sky_surface(0.2, coeffs, 2048, region), sky[region])
