"""Detector1 with the CEERS snowball expansion on simulated full frames, against the injected truth.

The numbers of the pipeline's own large-event expansion are printed beside
ours (run pytest with -s to see them).
"""

import numpy as np
import pytest
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import dqflags

from ceers_nircam.masking import dilate_square
from ceers_nircam.offline import artifacts

pytestmark = pytest.mark.pipeline

JUMP = dqflags.group["JUMP_DET"]
SAT = dqflags.group["SATURATED"]
DO_NOT_USE = dqflags.pixel["DO_NOT_USE"]


def onset_coverage(groupdq, events):
    """Per snowball: fraction of its core and halo flagged (jump or saturated) in its onset group."""
    shape = groupdq.shape[-2:]
    out = []
    for ev in events:
        if ev["group"] < 1:  # charge present from the first read leaves no jump to flag
            continue
        inside = artifacts.snowball_footprint(events[[ev.index]], shape, "halo")
        flags = groupdq[0, int(ev["group"])][inside]
        out.append(float(np.mean((flags & (JUMP | SAT)) != 0)))
    return np.array(out)


def false_flag_fraction(before, after, truth):
    """Share of pixels (and of pixel-groups) outside every snowball and cosmic-ray footprint
    that the expansion newly flagged."""
    shape = before.shape[-2:]
    outside = ~artifacts.snowball_footprint(truth["snowballs"], shape, "outer")
    hits = np.zeros(shape, dtype=bool)
    crs = truth["cosmic_rays"]
    hits[np.asarray(crs["y"]), np.asarray(crs["x"])] = True
    outside &= ~dilate_square(hits, 3)  # the jump step flags the neighbours of a hit too
    new = ((after & JUMP) != 0) & ((before & JUMP) == 0)
    per_pixel = float(np.mean(new.any(axis=(0, 1))[outside]))
    per_group = float(np.mean(new[:, 1:, outside]))
    return per_pixel, per_group


def rate_agreement(rate_path, truth, ideal):
    """Median |rate - truth| / ERR over the snowball footprints (wings included)."""
    with datamodels.ImageModel(rate_path) as rate:
        inside = artifacts.snowball_footprint(truth["snowballs"], rate.data.shape, "outer")
        use = inside & ((rate.dq & DO_NOT_USE) == 0) & np.isfinite(rate.data) & (rate.err > 0)
        return float(np.median(np.abs(rate.data - ideal)[use] / rate.err[use])), int(use.sum())


def test_every_snowball_core_and_halo_is_flagged_from_its_onset(nrca1):
    truth = nrca1["sim"].truth
    with datamodels.RampModel(nrca1["pipeline_ramp"]) as ramp:
        pipeline = onset_coverage(ramp.groupdq, truth["snowballs"])
    ours = onset_coverage(nrca1["after"], truth["snowballs"])
    jump_step = onset_coverage(nrca1["before"], truth["snowballs"])
    print(f"\nsnowballs: {len(ours)}; lowest share of core+halo flagged at onset: ours "
          f"{ours.min():.4f}, pipeline large events {pipeline.min():.4f}, jump step alone "
          f"{jump_step.min():.4f}")
    assert len(ours) >= 3
    assert ours.min() >= 0.99


def test_expansion_flags_little_outside_snowballs_and_cosmic_rays(nrca1):
    truth = nrca1["sim"].truth
    with datamodels.RampModel(nrca1["pipeline_ramp"]) as ramp:
        pipeline = false_flag_fraction(nrca1["before"], ramp.groupdq, truth)
    ours = false_flag_fraction(nrca1["before"], nrca1["after"], truth)
    print(f"\nnewly flagged outside snowball and cosmic-ray footprints (pixels, pixel-groups): "
          f"ours {ours[0]:.4%}, {ours[1]:.4%}; pipeline large events {pipeline[0]:.4%}, "
          f"{pipeline[1]:.4%}")
    assert ours[1] < 0.005
    assert ours[0] < 0.02


def test_rate_in_snowball_footprints_agrees_with_truth(nrca1):
    sim = nrca1["sim"]
    ours, n = rate_agreement(nrca1["rate"], sim.truth, sim.ideal)
    pipeline, _ = rate_agreement(nrca1["pipeline_rate"], sim.truth, sim.ideal)
    print(f"\nmedian |rate - truth| / ERR in snowball footprints ({n} pixels): ours {ours:.3f}, "
          f"pipeline large events {pipeline:.3f}")
    assert n > 1000
    assert ours < 1.5


@pytest.mark.parametrize("name", ["nrcb4", "nrca3"])
def test_script_output_meets_the_snowball_criteria(name, request):
    # The whole script (not the library calls) on the wisp exposures: the same coverage and rate.
    sim = request.getfixturevalue(name)
    truth = sim.truth
    with datamodels.RampModel(sim.product("ramp")) as ramp:
        coverage = onset_coverage(ramp.groupdq, truth["snowballs"])
    agreement, _ = rate_agreement(sim.product("rate"), truth, sim.ideal)
    assert len(coverage) >= 1 and coverage.min() >= 0.99
    assert agreement < 1.5


def test_rate_file_records_the_expansion(nrcb4):
    from ceers_nircam import history

    entries = history.entries(nrcb4.product("rate"), "snowball_wrapper")
    assert len(entries) == 1
    assert "expansion=ceers" in entries[0].replace("\n", "")
    with datamodels.ImageModel(nrcb4.product("rate")) as rate:
        assert rate.meta.cal_step.ramp_fit == "COMPLETE"
        assert rate.meta.filename == f"{nrcb4.root}_rate.fits"
