"""The CEERS snowball expansion: the fast version equals the plain scipy one, and what it flags."""

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from ceers_nircam.steps import snowballs

JUMP, SAT = snowballs.JUMP_DET, snowballs.SATURATED


def plane(shape, nballs, rng, cr_density=0.01):
    """Scattered single jumps plus snowballs: a ring of jumps around a saturated core."""
    jumps = rng.random(shape) < cr_density
    sat = np.zeros(shape, bool)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for _ in range(nballs):
        x, y = rng.uniform(-5, shape[1] + 5), rng.uniform(-5, shape[0] + 5)  # edges too
        core = rng.uniform(2, 7)
        halo = core * rng.uniform(1.5, 4)
        r = np.hypot(xx - x, (yy - y) / rng.uniform(0.5, 1))
        sat |= r <= core
        jumps |= (r > core) & (r <= halo) & (rng.random(shape) < 0.9)
    return jumps, sat


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("tiers", [((7, 7), (15, 35)), ((3, 2), (5.5, 9))])
def test_fast_expansion_equals_the_plain_algorithm(seed, tiers):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(40, 150, 2))
    jumps, sat = plane(shape, int(rng.integers(0, 4)), rng, cr_density=rng.uniform(0, 0.05))
    fast = snowballs.expand_plane(jumps, sat, tiers)
    plain = snowballs.expand_plane_plain(jumps, sat, tiers)
    np.testing.assert_array_equal(fast, plain)


def test_dense_jumps_everywhere_equal_the_plain_algorithm():
    rng = np.random.default_rng(99)
    jumps = rng.random((64, 64)) < 0.55  # the majority test is met almost everywhere
    sat = rng.random((64, 64)) < 0.1
    tiers = ((7, 7), (15, 35))
    np.testing.assert_array_equal(snowballs.expand_plane(jumps, sat, tiers),
                                  snowballs.expand_plane_plain(jumps, sat, tiers))


def _ramp_dq(ngroups=4, shape=(120, 120)):
    gdq = np.zeros((1, ngroups) + shape, dtype=np.uint8)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    r = np.hypot(xx - 60, yy - 60)
    gdq[0, 2][r <= 4] = SAT
    gdq[0, 3:][:, r <= 4] = SAT
    gdq[0, 2][(r > 4) & (r <= 12)] = JUMP
    gdq[0, 1, 10, 10] = JUMP  # an isolated cosmic ray
    gdq[0, 1, 11, 10] = JUMP | 2
    return gdq, r


def test_expansion_grows_snowballs_and_leaves_cosmic_rays():
    gdq, r = _ramp_dq()
    before = gdq.copy()
    added = snowballs.expand_groupdq(gdq)
    flagged = (gdq[0, 2] & JUMP) != 0
    assert flagged[r <= 12 + 4].all()  # core and halo, and the grown edge beyond
    assert not flagged[r > 12 + 7 + 1].any()
    np.testing.assert_array_equal(gdq[0, 1], before[0, 1])  # the lone hit is not expanded
    np.testing.assert_array_equal(gdq & ~np.uint8(JUMP), before & ~np.uint8(JUMP))  # other bits kept
    assert added == int(((gdq & JUMP) != 0).sum() - ((before & JUMP) != 0).sum())


def test_dr05_second_tier_grows_large_snowballs_further():
    gdq, r = _ramp_dq()
    dr05 = snowballs.SnowballParams(detect_radii=(7.0, 15.0), grow_radii=(7.0, 35.0))
    snowballs.expand_groupdq(gdq, dr05)
    flagged = (gdq[0, 2] & JUMP) != 0
    assert flagged[r <= 40].all() and not flagged[r > 12 + 35 + 1].any()


def test_jump_test_is_bitwise_unless_legacy():
    gdq = np.array([[0, 4, 6, 5, 2]], dtype=np.uint8)
    np.testing.assert_array_equal(snowballs.jump_plane(gdq), [[False, True, True, True, False]])
    np.testing.assert_array_equal(snowballs.jump_plane(gdq, legacy=True),
                                  [[False, True, False, False, False]])


def test_legacy_test_misses_jumps_that_carry_another_flag():
    gdq, _ = _ramp_dq()
    gdq[0, 2][(gdq[0, 2] & JUMP) != 0] |= np.uint8(2)  # every halo jump also flagged saturated
    legacy = gdq.copy()
    # Saturation onsets would count those pixels anyway; this compares the jump tests alone.
    snowballs.expand_groupdq(gdq, snowballs.SnowballParams(legacy_saturated_cores=True))
    snowballs.expand_groupdq(legacy, snowballs.SnowballParams(legacy_jump_test=True,
                                                              legacy_saturated_cores=True))
    assert ((gdq[0, 2] & JUMP) != 0).sum() > ((legacy[0, 2] & JUMP) != 0).sum()


@pytest.mark.parametrize("core", [5.0, 6.5])
def test_a_saturated_core_filling_the_detection_disk_is_expanded(core):
    """The jump step flags only the ring around a core that saturates at once; the
    pixels saturating in that group count as jumps, and the snowball is grown."""
    gdq, r = _ramp_dq()
    gdq[0, 2:][:, (r <= core)] = SAT
    gdq[0, 2][(r > core) & (r <= core + 3)] = JUMP
    gdq[0, 2][r > core + 3] = 0
    legacy = gdq.copy()
    snowballs.expand_groupdq(gdq)
    snowballs.expand_groupdq(legacy, snowballs.SnowballParams(legacy_saturated_cores=True))
    flagged, old = (gdq[0, 2] & (JUMP | SAT)) != 0, (legacy[0, 2] & (JUMP | SAT)) != 0
    assert not old[r > core + 3].any()  # the original never expands it
    assert flagged[r <= core + 3 + 5].all() and not flagged[r > core + 3 + 7 + 1].any()
    # a core saturated from the first group on (a bright star) has no onset
    star = np.zeros_like(gdq)
    star[0, :, r <= core] = SAT
    snowballs.expand_groupdq(star)
    assert not (star & JUMP).any()


def test_apply_on_a_ramp_model():
    gdq, _ = _ramp_dq()
    model = datamodels.RampModel(data=np.zeros(gdq.shape, np.float32), groupdq=gdq)
    model, status = snowballs.apply(model)
    assert status.applied and status.values["added"] > 400
    assert (model.groupdq[0, 2] & JUMP).any()


def test_tiers_need_matching_radii():
    with pytest.raises(ValueError):
        snowballs.SnowballParams(detect_radii=(7.0,), grow_radii=(7.0, 35.0))
