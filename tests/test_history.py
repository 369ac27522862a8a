"""History entries: what a step did, and the rerun guard built on them."""

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from ceers_nircam import history


def test_entry_names_step_and_parameters():
    assert history.describe("remstriping", {"thresh": 0.8, "save_patterns": True}) == (
        "ceers-nircam remstriping: thresh=0.8, save_patterns=True")


def test_guard_reads_model_and_saved_file(tmp_path):
    model = datamodels.ImageModel(np.zeros((8, 8), np.float32))
    assert not history.already_done(model, "wispsub")
    history.record(model, "wispsub", {"scale": 0.57, "template": "wisps_nrcb4_F150W.fits"})
    assert history.already_done(model, "wispsub")
    assert not history.already_done(model, "wisp")  # a prefix of another step is not that step
    path = str(tmp_path / "x_rate.fits")
    model.save(path)
    assert history.already_done(path, "wispsub")
    assert not history.already_done(path, "remstriping")
    assert history.entries(path, "wispsub")[0].startswith("ceers-nircam wispsub: scale=0.57")


def test_long_entries_come_back_whole(tmp_path):
    # FITS splits a long entry over 72-character HISTORY cards; it must read back as one entry.
    model = datamodels.ImageModel(np.zeros((8, 8), np.float32))
    params = {f"parameter_{i}": f"value_{i}" for i in range(12)}
    history.record(model, "remstriping", params)
    model.add_history_entry("another tool's short note")
    history.record(model, "wispsub", {"x": "y" * 48})  # 72 characters without the dot
    path = str(tmp_path / "x_rate.fits")
    model.save(path)
    for source in (path, datamodels.ImageModel(path)):
        entry = history.entries(source, "remstriping")
        assert entry == [history.describe("remstriping", params)]
        assert history.entries(source, "wispsub")[0].endswith("y" * 48 + ".")


@pytest.mark.parametrize("pad", range(0, 6))
def test_entries_with_a_space_at_a_card_boundary_come_back_whole(tmp_path, pad):
    # FITS drops a card's trailing blank: a space falling at the end of a card must come back.
    model = datamodels.ImageModel(np.zeros((8, 8), np.float32))
    params = {"a" * (40 + pad): 1, "ring_width": 3.0, "clip_box": 100, "clip_nsigma": 5.0,
              "bkg_box": 5, "bkg_filter": 3, "bkg_sigma": 3.0, "rnoise_factor": 11.84199}
    history.record(model, "skywcsvar", params)
    path = str(tmp_path / "x_match.fits")
    model.save(path)
    for source in (path, datamodels.ImageModel(path)):
        text = history.entries(source, "skywcsvar")[0]
        assert text.rstrip(".") == history.describe("skywcsvar", params)
