"""Snowballs, cosmic rays and wisps as flight NIRCam shows them, checked on the generators."""

import os

import numpy as np
import pytest
from astropy.table import Table

from ceers_nircam.offline import artifacts
from ceers_nircam.offline import instrument as inst

FRAMES_9 = inst.frame_times(9)  # a CEERS MEDIUM8 exposure of 9 groups: 966 s


def test_snowball_rate_is_one_per_20_s_with_a_spread_between_exposures():
    # Over 20 exposures of 1000 s the mean count is 50 +- 10 (JDox: one per 20 s per detector).
    counts = np.array([artifacts.snowball_count(np.random.default_rng(seed), 1000.0)
                       for seed in range(20)])
    assert counts.mean() == pytest.approx(50, abs=10)
    # ...and the counts vary well beyond Poisson (sqrt 50 ~ 7): the rate itself changes.
    assert counts.std() > 1.5 * np.sqrt(50)
    flat = np.array([artifacts.snowball_count(np.random.default_rng(seed), 1000.0, spread=0.0)
                     for seed in range(200)])
    assert flat.std() == pytest.approx(np.sqrt(50), rel=0.2)


def test_snowballs_land_in_any_group_after_the_first_partly_in_their_onset_group():
    events = artifacts.snowball_events(np.random.default_rng(2), 2000, FRAMES_9)
    groups = np.asarray(events["group"])
    assert groups.min() == 1 and groups.max() == 8  # the last group included
    assert np.all(np.bincount(groups, minlength=9)[1:] > 150)  # every later group
    frac = np.asarray(events["fraction"])
    assert np.all((frac > 0) & (frac <= 1))
    assert 0.2 < np.mean(frac < 1) < 0.95  # many arrive while their group is being read
    elongated = np.asarray(events["axis_ratio"]) < 1
    assert np.mean(elongated) == pytest.approx(artifacts.ELONGATED_FRACTION, abs=0.03)
    assert np.all(np.asarray(events["release"]) > 0)


def test_a_snowball_in_the_last_group_records_the_halo_of_its_share_of_the_charge():
    events = artifacts.snowball_events(np.random.default_rng(4), 400, FRAMES_9)
    recorded = artifacts.recorded_halos(events, 9)
    last = np.asarray(events["group"]) == 8
    assert 20 < last.sum() < 200
    np.testing.assert_array_equal(recorded["halo_radius"][~last], events["halo_radius"][~last])
    assert np.all(recorded["halo_radius"][last] >= events["core_radius"][last])
    assert np.all(recorded["halo_radius"][last] <= events["halo_radius"][last])
    # the share of the charge the last group holds crosses HALO_EDGE_DN at the recorded edge,
    # read off the deposit itself (a round copy of each snowball, centred on a pixel)
    checked = 0
    for ev, rec in zip(events[last], recorded[last]):
        if rec["halo_radius"] <= ev["core_radius"] + 1:
            continue
        checked += 1
        round_ev = Table(ev)[0]
        round_ev["x"], round_ev["y"], round_ev["axis_ratio"], round_ev["angle"] = 500, 500, 1.0, 0.0
        yy, xx, dn, _ = artifacts.snowball_charge(round_ev)
        along = (yy == 500) & (xx >= 500)
        share = ev["fraction"] * dn[along][np.argsort(xx[along])]
        inner, outer = int(np.floor(rec["halo_radius"])), int(np.ceil(rec["halo_radius"]))
        assert share[inner] >= artifacts.HALO_EDGE_DN >= share[outer]
    assert checked >= 3


HEADER = {"GAIN": 2.05, "RNGROUP": 1.9, "SKYRATE": 0.3, "SUBARRAY": "FULL"}


def _one_snowball(group=3, fraction=0.5):
    ev = Table(rows=[(300.0, 300.0, 5.0, 18.0, 4000.0, 0.6, 40.0, 300.0, group, fraction, 0.02)],
               names=("x", "y", "core_radius", "halo_radius", "core_edge_dn", "axis_ratio",
                      "angle", "time", "group", "fraction", "release"))
    scale = artifacts.halo_scale(5.0, 18.0, 4000.0)
    ev["outer_radius"] = 5.0 + scale * np.log(4000.0 / artifacts.WING_END_DN)
    return ev


def test_on_the_sky_the_recordable_halo_is_the_halo():
    ev = _one_snowball()
    shape = (600, 600)
    edge = artifacts.halo_edge_dn(np.full(shape, HEADER["SKYRATE"]), HEADER)
    np.testing.assert_allclose(edge, artifacts.HALO_EDGE_DN, rtol=1e-6)
    halo = artifacts.snowball_footprint(ev, shape, "halo")
    seen = artifacts.detectable_halo(ev[0], shape, edge, 9)
    # the same pixels, but for rounding on the edge itself
    assert (halo ^ seen).sum() <= 2
    assert halo.sum() > 500


def test_on_a_bright_source_the_recordable_halo_shrinks_with_its_photon_noise():
    ev = _one_snowball()
    shape = (600, 600)
    rate = np.full(shape, HEADER["SKYRATE"])
    rate[:, 300:] = 10.0  # a bright source over the right half
    edge = artifacts.halo_edge_dn(rate, HEADER)
    tgroup = inst.group_time()
    ratio = np.sqrt((10.0 * tgroup / 2.05 + 2 * 1.9**2) / (0.3 * tgroup / 2.05 + 2 * 1.9**2))
    assert edge[0, 400] == pytest.approx(artifacts.HALO_EDGE_DN * ratio, rel=1e-5)
    assert ratio > 4  # a 20 DN deposit is under 1 sigma of a 10 DN/s pixel's group difference
    halo = artifacts.snowball_footprint(ev, shape, "halo")
    seen = artifacts.detectable_halo(ev[0], shape, edge, 9)
    core = artifacts.snowball_footprint(ev, shape, "core")
    assert np.all(seen[core]) and not np.any(seen & ~halo)
    left, right = np.s_[:, :300], np.s_[:, 300:]
    assert (halo[left] ^ seen[left]).sum() <= 2  # the sky side keeps its halo
    # the source side: the halo of the same snowball ending where its deposit meets the edge
    scale = artifacts.halo_scale(5.0, 18.0, 4000.0)
    smaller = ev.copy()
    smaller["halo_radius"] = 5.0 + scale * np.log(4000.0 / edge[0, 400])
    assert smaller["halo_radius"][0] < 15  # from 18 on the sky
    expected = artifacts.snowball_footprint(smaller, shape, "halo")
    assert (expected[right] ^ seen[right]).sum() <= 2
    assert seen[right].sum() < halo[right].sum() - 100
    # ...so flags on the recordable halo alone cover the snowball, and only with the rate given
    from ceers_nircam import qa

    flags = np.where(seen, np.uint16(1 << 3), np.uint16(0))
    assert qa.onset_coverage(flags, ev, 9, rate, HEADER)[0] == 1.0
    assert qa.onset_coverage(flags, ev, 9)[0] < 0.9


def test_a_last_group_snowball_records_its_share_on_a_bright_source_too():
    ev = _one_snowball(group=8, fraction=0.3)
    shape = (600, 600)
    sky = artifacts.halo_edge_dn(np.full(shape, HEADER["SKYRATE"]), HEADER)
    recorded = artifacts.snowball_footprint(artifacts.recorded_halos(ev, 9), shape, "halo")
    seen = artifacts.detectable_halo(ev[0], shape, sky, 9)
    assert (recorded ^ seen).sum() <= 2
    assert recorded.sum() < artifacts.snowball_footprint(ev, shape, "halo").sum()


def test_snowball_has_saturated_core_halo_wing_and_slow_release():
    ev = Table(rows=[(500.0, 400.0, 5.0, 15.0, 1500.0, 0.6, 30.0, 300.0, 3, 0.5, 0.05)],
               names=("x", "y", "core_radius", "halo_radius", "core_edge_dn", "axis_ratio",
                      "angle", "time", "group", "fraction", "release"))
    scale = (15.0 - 5.0) / np.log(1500.0 / artifacts.HALO_EDGE_DN)
    ev["outer_radius"] = 5.0 + scale * np.log(1500.0 / artifacts.WING_END_DN)
    ev["time"] = FRAMES_9[3, 4] - 1.0  # during group 3's reads: its last 4 of 8 frames see it
    groups = np.zeros((9, 600, 800), np.float32)
    artifacts.add_snowballs(groups, ev, FRAMES_9)
    core = artifacts.snowball_footprint(ev, groups.shape[1:], "core")
    assert np.all(groups[2][core] == 0) and np.all(groups[4][core] >= inst.SATURATION_LEVEL)
    assert np.allclose(groups[3][core], 0.5 * groups[4][core])  # half of group 3's frames
    # Elongated: along the major axis (30 deg) the halo reaches farther than across it.
    a = np.deg2rad(30.0)
    along = groups[4, int(400 + 12 * np.sin(a)), int(500 + 12 * np.cos(a))]
    across = groups[4, int(400 + 12 * np.cos(a)), int(500 - 12 * np.sin(a))]
    assert along > 10 * across
    # The halo keeps collecting released charge after the event; the core does not.
    halo_pixel = (400, int(500 + 8 * np.cos(a)))
    rise = groups[8][halo_pixel] - groups[4][halo_pixel]
    prompt = groups[4][halo_pixel]
    assert 0.01 * prompt < rise < 0.05 * prompt
    assert np.all(groups[8][core] == groups[4][core])


def test_cosmic_rays_have_flight_footprints_charge_and_ipc():
    rng = np.random.default_rng(5)
    hits = artifacts.cosmic_rays(rng, 20000, FRAMES_9, gain=2.0)
    events = np.asarray(hits["event"])
    npix = np.bincount(events)
    charge_e = np.bincount(events, weights=np.asarray(hits["charge"]) * 2.0)
    seen = npix > 0
    assert npix[seen].mean() == pytest.approx(7.0, abs=1.0)  # about 7 pixels per hit
    assert charge_e[seen].mean() == pytest.approx(artifacts.CR_CHARGE_E, rel=0.1)
    assert np.asarray(hits["group"]).min() == 0  # some arrive before the first read
    assert np.asarray(hits["group"]).max() == 8


def test_reference_pixels_collect_no_snowball_or_cosmic_ray_charge():
    # A snowball whose halo spills over the left border, and hits spread over a small frame:
    # the border has no photodiodes, so none of that charge may land there (the side
    # reference pixels of a row would otherwise darken the whole row in refpix).
    shape = (200, 200)
    light = ~inst.reference_pixel_mask()[:200, :200]
    ev = Table(rows=[(6.0, 100.0, 5.0, 15.0, 1500.0, 1.0, 0.0, 300.0, 3, 0.5, 0.05)],
               names=("x", "y", "core_radius", "halo_radius", "core_edge_dn", "axis_ratio",
                      "angle", "time", "group", "fraction", "release"))
    ev["outer_radius"] = 40.0
    spilled = np.zeros((9,) + shape, np.float32)
    artifacts.add_snowballs(spilled, ev, FRAMES_9)
    assert spilled[-1][~light].max() > 1000  # without the mask the border would collect it
    groups = np.zeros((9,) + shape, np.float32)
    artifacts.add_snowballs(groups, ev, FRAMES_9, light)
    assert np.all(groups[:, ~light] == 0)
    np.testing.assert_array_equal(groups[:, light], spilled[:, light])
    hits = artifacts.cosmic_rays(np.random.default_rng(3), 3000, FRAMES_9, gain=2.0, shape=shape,
                                 sensitive=light)
    assert len(hits) > 10000 and np.all(light[hits["y"], hits["x"]])
    assert np.min(hits["x"]) == inst.NREF and np.min(hits["y"]) == inst.NREF


@pytest.mark.parametrize("ipc", [0.005, 0.01])
def test_ipc_couples_the_stated_share_into_each_neighbour(ipc):
    box = np.zeros((1, 5, 5))
    box[0, 2, 2] = 1000.0
    out = artifacts.ipc_couple(box, ipc)
    assert out[0, 2, 2] == pytest.approx(1000.0 * (1 - 4 * ipc))
    for y, x in ((1, 2), (3, 2), (2, 1), (2, 3)):
        assert out[0, y, x] == pytest.approx(1000.0 * ipc)
    assert out.sum() == pytest.approx(1000.0)


@pytest.mark.parametrize("seed", range(4))
def test_cosmic_ray_charge_appears_from_its_arrival(seed):
    hits = artifacts.cosmic_rays(np.random.default_rng(seed), 1, FRAMES_9, gain=2.0, shape=(64, 64))
    groups = np.zeros((9, 64, 64), np.float32)
    artifacts.add_cosmic_rays(groups, hits, FRAMES_9)
    g, frac = int(hits["group"][0]), float(hits["fraction"][0])
    y, x, q = np.asarray(hits["y"]), np.asarray(hits["x"]), np.asarray(hits["charge"])
    assert np.all(groups[:g, y, x] == 0)
    np.testing.assert_allclose(groups[g, y, x], frac * q, rtol=1e-5)
    np.testing.assert_allclose(groups[g + 1:, y, x], np.broadcast_to(q, groups[g + 1:, y, x].shape),
                               rtol=1e-5)
    assert groups.sum() == pytest.approx(groups[:, y, x].sum())  # nothing elsewhere


@pytest.mark.parametrize("detector", ["NRCA3", "NRCA4", "NRCB3", "NRCB4"])
def test_wisp_differs_from_template_yet_its_template_scale_is_exact(detector):
    template = np.nan_to_num(artifacts.wisp_template(detector, "F150W"))
    for seed, rms in ((1, 0.2), (2, 0.3)):
        wisp = 0.8 * template * artifacts.wisp_distortion(np.random.default_rng(seed), template, rms)
        t = template.astype(np.float64)
        assert (wisp * t).sum() / (t * t).sum() == pytest.approx(0.8, rel=1e-5)
        resid = wisp - 0.8 * template
        assert np.sqrt((resid**2).sum() / ((0.8 * t) ** 2).sum()) == pytest.approx(rms, rel=1e-3)
    other = 0.8 * template * artifacts.wisp_distortion(np.random.default_rng(3), template, 0.25)
    assert not np.allclose(other, wisp, rtol=0.05)  # different in every exposure


def test_nrcb4_has_the_strongest_wisp():
    peaks = {d: np.nanmax(artifacts.wisp_template(d, "F200W")) for d in artifacts.WISP_DETECTORS}
    assert max(peaks, key=peaks.get) == "NRCB4"


def test_wisp_templates_left_by_another_version_are_rewritten(tmp_path):
    from astropy.io import fits

    paths = artifacts.write_wisp_templates(tmp_path, ["NRCA3"], ["F150W", "F200W"])
    assert len(paths) == 2
    stale, current = paths
    with fits.open(stale, mode="update") as hdul:
        hdul[0].data = hdul[0].data * 2  # an older generator's template
    before = os.stat(current).st_mtime_ns
    assert artifacts.write_wisp_templates(tmp_path, ["NRCA3"], ["F150W", "F200W"]) == paths
    np.testing.assert_array_equal(fits.getdata(stale), artifacts.wisp_template("NRCA3", "F150W"))
    assert os.stat(current).st_mtime_ns == before  # an up-to-date template is not rewritten
