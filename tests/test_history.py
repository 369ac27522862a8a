"""History entries: what a step did, and the rerun guard built on them."""

import numpy as np
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
