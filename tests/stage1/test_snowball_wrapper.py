"""Detector1 with the snowball expansion on simulated full frames, against the injected truth.

Every number is printed for our expansion, DR0.5's two tiers and the
pipeline's large-event expansion (run pytest with -s to see them).
"""

import os

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import dqflags

from ceers_nircam import history, qa
from ceers_nircam.masking import dilate_disk
from ceers_nircam.offline import artifacts

from stage1_helpers import run_script, simulate

pytestmark = pytest.mark.pipeline

NAMES = {"ours": "ours", "dr05": "DR0.5 two tiers", "pipeline": "pipeline large events"}


def test_every_snowball_core_and_halo_is_flagged_from_its_onset(nrca1):
    sim = nrca1["sim"]
    events, header = sim.truth["snowballs"], sim.truth["header"]
    cover = {name: qa.onset_coverage(gdq, events, rate=sim.ideal, header=header)
             for name, gdq in nrca1["flags"].items()}
    jump_step = qa.onset_coverage(nrca1["before"], events, rate=sim.ideal, header=header)
    on_sky_edge = qa.onset_coverage(nrca1["flags"]["ours"], events)
    print(f"\n{len(events)} snowballs; lowest share of a core+halo flagged at onset: "
          + ", ".join(f"{NAMES[n]} {c.min():.4f}" for n, c in cover.items())
          + f", jump step alone {jump_step.min():.4f}; ours with the sky's halo edge everywhere "
          f"{on_sky_edge.min():.4f}")
    assert len(events) >= 20
    assert cover["ours"].min() >= 0.99


def test_expansion_flags_little_outside_snowballs_and_cosmic_rays(nrca1):
    truth = nrca1["sim"].truth
    found = {name: qa.false_flags(nrca1["before"], gdq, truth) for name, gdq in nrca1["flags"].items()}
    print("\nnewly flagged outside snowball and cosmic-ray footprints (pixels; pixel-groups): "
          + ", ".join(f"{NAMES[n]} {f[0]:.3%}; {f[1]:.3%}" for n, f in found.items()))
    assert found["ours"][0] < 0.005
    assert found["ours"][1] < 0.005


def test_rate_in_snowball_footprints_agrees_with_truth(nrca1):
    sim = nrca1["sim"]
    found = {name: qa.rate_agreement(path, sim.truth, sim.ideal) for name, path in nrca1["rates"].items()}
    print(f"\nmedian |rate - truth| / ERR in snowball footprints ({found['ours'][1]} pixels): "
          + ", ".join(f"{NAMES[n]} {f[0]:.3f}" for n, f in found.items()))
    assert found["ours"][1] > 10000
    assert found["ours"][0] < 1.5


@pytest.mark.parametrize("name", ["nrcb4", "nrca3"])
def test_script_output_meets_the_snowball_criteria(name, request):
    # The whole script (not the library calls) on the wisp exposures: the same coverage and rate.
    sim = request.getfixturevalue(name)
    truth = sim.truth
    with datamodels.RampModel(sim.product("ramp")) as ramp:
        coverage = qa.onset_coverage(ramp.groupdq, truth["snowballs"], rate=sim.ideal,
                                     header=truth["header"])
    agreement, _ = qa.rate_agreement(sim.product("rate"), truth, sim.ideal)
    assert len(coverage) >= 10 and coverage.min() >= 0.99
    assert agreement < 1.5


def test_saved_mask_holds_what_the_expansion_added(nrca3):
    first = fits.getdata(nrca3.product("snowmask"), "SNOWMASK")
    truth = nrca3.truth
    groups = fits.getdata(nrca3.product("snowmask"), "FLAGGRP")
    with datamodels.RampModel(nrca3.product("ramp")) as ramp:
        flagged = np.take_along_axis(ramp.groupdq[0], np.maximum(first, 0)[None], axis=0)[0]
        for g in range(ramp.groupdq.shape[1]):
            marked = (ramp.groupdq[0, g] & (dqflags.group["JUMP_DET"] | dqflags.group["SATURATED"])) != 0
            np.testing.assert_array_equal((groups >> g) & 1 == 1, marked)
        coverage = qa.onset_coverage(ramp.groupdq, truth["snowballs"])
        ngroups = ramp.groupdq.shape[1]
    np.testing.assert_array_equal(qa.onset_coverage(groups, truth["snowballs"], ngroups), coverage)
    added = first >= 0
    assert added.sum() > 1000
    assert np.all(flagged[added] & dqflags.group["JUMP_DET"])  # flagged in the group it names
    # The expansion works around snowballs (and the largest cosmic-ray showers): nearly all
    # it adds lies within their reach, the grow radius included.
    hits = np.zeros(first.shape, dtype=bool)
    hits[truth["cosmic_rays"]["y"], truth["cosmic_rays"]["x"]] = True
    near = artifacts.snowball_footprint(truth["snowballs"], first.shape, "outer") | hits
    assert dilate_disk(near, 7)[added].mean() > 0.95


def test_rate_file_records_the_expansion(nrcb4):
    entries = history.entries(nrcb4.product("rate"), "snowball_wrapper")
    assert len(entries) == 1
    assert "expansion=ceers" in entries[0] and "detect_radii=(7.0,)" in entries[0]
    with datamodels.ImageModel(nrcb4.product("rate")) as rate:
        assert rate.meta.cal_step.ramp_fit == "COMPLETE"
        assert rate.meta.filename == f"{nrcb4.root}_rate.fits"


def test_large_event_option_and_interim_files(offline_env, tmp_path):
    # A small subarray through the real command line choices: the pipeline's expansion instead
    # of ours, interim files deleted.
    sim = simulate(tmp_path, "NRCB1", "F200W", seed=7104, subarray="SUB320", snowballs=3)
    out = tmp_path / "calibrated"
    assert run_script("snowball_wrapper", sim.uncal, "--output_dir", out, "--expand_large_events",
                      "--delete_interim", "--cores", "half") == 0
    assert sorted(os.listdir(out)) == [f"{sim.root}_rate.fits"]
    entry = history.entries(str(out / f"{sim.root}_rate.fits"), "snowball_wrapper")[0]
    assert "expansion=pipeline large events" in entry and "cores=half" in entry
    with datamodels.ImageModel(str(out / f"{sim.root}_rate.fits")) as rate:
        assert rate.data.shape == (320, 320)
