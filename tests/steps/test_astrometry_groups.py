"""One entry per sky source in a detector group's catalogs; residuals of an absolute fit."""

import numpy as np
import pytest
from astropy.table import Table

from ceers_nircam.steps import astrometry


def _dithers(rng, n=40, jitter_mas=5.0):
    ra0, dec0 = 214.9, 52.9
    ra = ra0 + rng.uniform(-0.01, 0.01, n)
    dec = dec0 + rng.uniform(-0.01, 0.01, n)
    images = []
    for k in range(3):
        j = rng.normal(0, jitter_mas / 3.6e6, (2, n))
        keep = rng.uniform(size=n) > 0.2  # each dither misses a fifth of the sources
        images.append((ra[keep] + j[0][keep] / np.cos(np.deg2rad(dec0)), dec[keep] + j[1][keep],
                       rng.uniform(1, 10, keep.sum()), np.flatnonzero(keep)))
    return images, n


def test_each_source_is_kept_once_where_it_weighs_most():
    images, n = _dithers(np.random.default_rng(5))
    keep = astrometry.unique_sources([i[0] for i in images], [i[1] for i in images],
                                     [i[2] for i in images], radius=0.1)
    kept = np.concatenate([img[3][k] for img, k in zip(images, keep)])
    seen = np.unique(np.concatenate([img[3] for img in images]))
    assert sorted(kept) == sorted(seen)  # every source once, none twice
    for source in seen:
        weights = [img[2][img[3] == source] for img in images]
        best = np.argmax([w[0] if len(w) else -1 for w in weights])
        assert keep[best][images[best][3] == source][0]


def test_distinct_close_sources_survive_and_empty_catalogs_pass():
    ra = [np.array([10.0, 10.0 + 0.3 / 3600]), np.array([])]
    dec = [np.array([0.0, 0.0]), np.array([])]
    keep = astrometry.unique_sources(ra, dec, [np.ones(2), np.ones(0)], radius=0.1)
    assert keep[0].tolist() == [True, True] and keep[1].size == 0
    assert [k.size for k in astrometry.unique_sources([np.array([])], [np.array([])],
                                                      [np.array([])], 0.1)] == [0]


def test_residuals_of_an_absolute_fit():
    ref = Table({"RA": [10.0, 10.001, 10.002], "DEC": [60.0, 60.001, 60.002]})
    off = np.array([0.010, -0.020]) / 3600  # arcsec -> deg
    fit = {"matched_ref_idx": np.array([2, 0, 1]), "fitmask": np.array([True, False, True]),
           "fit_RA": np.array([10.002, 10.001]) + off[0] / np.cos(np.deg2rad(60.0)),
           "fit_DEC": np.array([60.002, 60.001]) + off[1], "rmse": 0.02}
    ra, dec, dra, ddec = astrometry.residuals(fit, ref)
    np.testing.assert_allclose(ra, [10.002, 10.001])
    np.testing.assert_allclose(dra, 0.010, atol=2e-5)
    np.testing.assert_allclose(ddec, -0.020, atol=1e-9)


def test_residual_plot_is_a_png(tmp_path):
    rng = np.random.default_rng(1)
    n = 50
    ref = Table({"RA": 214.9 + rng.uniform(0, 0.01, n), "DEC": 52.9 + rng.uniform(0, 0.01, n)})
    fit = {"matched_ref_idx": np.arange(n), "fitmask": np.ones(n, bool),
           "fit_RA": np.asarray(ref["RA"]) + rng.normal(0, 1e-6, n),
           "fit_DEC": np.asarray(ref["DEC"]) + rng.normal(0, 1e-6, n), "rmse": 0.005}
    path = astrometry.plot_residuals(str(tmp_path / "r.png"), fit, ref, "test")
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("catalog_kind", ["weighted", "unweighted"])
def test_group_catalogs_use_the_aligned_wcs(catalog_kind):
    class Meta:
        pass

    class Model:
        def __init__(self, dx):
            self.meta = Meta()
            # A toy WCS: 0.03 arcsec pixels, dithers offset by dx pixels.
            self.meta.wcs = lambda x, y, dx=dx: (10.0 + (x + dx) * 0.03 / 3600, 20.0 + y * 0.03 / 3600)

    x = np.array([100.0, 200.0, 300.0])
    cats = [Table({"x": x - dx, "y": x.copy()}) for dx in (0.0, 5.0)]
    if catalog_kind == "weighted":
        cats[0]["weight"] = [1.0, 9.0, 1.0]
        cats[1]["weight"] = [5.0, 1.0, 5.0]
    out = astrometry.group_catalogs([Model(0.0), Model(5.0)], cats)
    assert len(out[0]) + len(out[1]) == 3
    if catalog_kind == "weighted":
        assert list(out[0]["y"]) == [200.0] and list(out[1]["y"]) == [100.0, 300.0]


def test_catfiles_of_alignments_sharing_a_directory_do_not_overwrite_each_other(tmp_path):
    """Filters are aligned side by side into one catalog directory; each keeps its catfile."""
    from stdatamodels.jwst.datamodels import ImageModel

    runs = {}
    for filt in ("02201", "04201"):
        models, catalogs = [], []
        for dither in (1, 2):
            model = ImageModel((8, 8))
            model.meta.filename = f"jw01345001001_{filt}_0000{dither}_nrca1_cal.fits"
            models.append(model)
            catalogs.append(Table({"x": [1.0 * dither], "y": [2.0], "weight": [3.0]}))
        runs[filt] = (models, astrometry.write_catalogs(models, catalogs, tmp_path))
    assert runs["02201"][1] != runs["04201"][1]
    for filt, (models, catfile) in runs.items():
        listed = dict(line.split() for line in open(catfile).read().splitlines())
        assert sorted(listed) == sorted(m.meta.filename for m in models)
        for name, path in listed.items():
            assert Table.read(path)["x"][0] == int(name.split("_")[2])  # the dither's own catalog
