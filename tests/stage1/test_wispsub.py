"""wispsub.py on simulated full frames: the fitted scale and the residual wisp against the truth.

Each exposure is also re-scaled: adding (s / s0 - 1) x the injected wisp
(truth extension WISP, in DN/s before the flat, distortion and all) to the
rate gives the same scene with template scale s, so one exposure checks the
fit over 0.4-1.2.
"""

import os
import re

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from ceers_nircam import fitsio, history
from ceers_nircam.steps import wisps

from stage1_helpers import copy_rate, run_script

pytestmark = pytest.mark.pipeline


def rescaled_rate(sim, scale, directory):
    """A copy of the exposure's rate file with the injected wisp at template scale ``scale``."""
    truth = sim.truth
    s0 = truth["header"]["WISPSCL"]
    path = os.path.join(directory, f"{sim.root}_rate.fits")
    os.makedirs(directory, exist_ok=True)
    with datamodels.ImageModel(sim.product("rate")) as model:
        keep = model.data != 0
        model.data = np.where(keep, model.data + (scale / s0 - 1.0) * truth["wisp"], 0).astype(np.float32)
        fitsio.save_model(model, path)
    return path, truth["wisp"] * (scale / s0)


def fitted_scale(path):
    with datamodels.ImageModel(path) as model:
        entry = history.entries(model, "wispsub")[0]
    return float(re.search(r"scale=([-0-9.]+)", entry).group(1))


def template_of(sim):
    det, filt = sim.truth["header"]["DETECTOR"], sim.truth["header"]["FILTER"]
    path = wisps.find_template(os.environ["CEERS_WISP_TEMPLATES"], det, filt)
    return wisps.read_template(path)


@pytest.mark.parametrize("name", ["nrcb4", "nrca3"])
@pytest.mark.parametrize("scale", [0.4, 0.8, 1.2])
def test_fit_recovers_the_template_scale_and_removes_the_wisp(name, scale, request, tmp_path):
    sim = request.getfixturevalue(name)
    path, injected = rescaled_rate(sim, scale, tmp_path)
    assert run_script("wispsub", path, "--fit") == 0
    found = fitted_scale(path)
    with datamodels.ImageModel(path) as model:
        subtracted = found * wisps.clean_template(template_of(sim), model.data)
        on = (injected != 0) & (model.data != 0)
    rms_in = np.sqrt(np.mean(injected[on] ** 2))
    rms_left = np.sqrt(np.mean((injected - subtracted)[on] ** 2))
    print(f"\n{name} scale {scale}: fitted {found:.4f}, residual wisp RMS {rms_left / rms_in:.3f} "
          f"of the injected")
    assert found == pytest.approx(scale, abs=0.05)
    assert rms_left <= 0.4 * rms_in
    assert os.path.exists(path.replace("_rate.fits", "_rate_prewisp.fits"))


def test_manual_mode_subtracts_exactly_scale_times_template(nrcb4, tmp_path):
    path = copy_rate(nrcb4.product("rate"), tmp_path)
    assert run_script("wispsub", path, "--scale", "0.73") == 0
    with datamodels.ImageModel(path.replace("_rate.fits", "_rate_prewisp.fits")) as before, \
            datamodels.ImageModel(path) as after:
        expected = before.data - np.float32(0.73) * wisps.clean_template(template_of(nrcb4), before.data)
        np.testing.assert_array_equal(after.data, expected)
        np.testing.assert_array_equal(after.dq, before.dq)
        assert np.any(after.data != before.data)
    assert fitted_scale(path) == 0.73


def test_fit_uses_the_crds_flat_and_plots_the_curve(nrca3, tmp_path):
    path = copy_rate(nrca3.product("rate"), tmp_path)
    assert run_script("wispsub", path, "--fit", "--plot") == 0
    with datamodels.ImageModel(path) as model:
        entry = history.entries(model, "wispsub")[0]
    assert "flat=jwst_nircam_flat_f150w_synth.fits" in entry
    assert "template=wisps_nrca3_F150W.fits" in entry
    png = path.replace("_rate.fits", "_rate_wisp.png")
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_stsci_template_naming_is_found(nrca3, tmp_path):
    templates = tmp_path / "stsci"
    templates.mkdir()
    src = wisps.find_template(os.environ["CEERS_WISP_TEMPLATES"], "NRCA3", "F150W")
    os.symlink(src, templates / "WISP_NRCA3_F150W_CLEAR.fits")
    path = copy_rate(nrca3.product("rate"), tmp_path / "run")
    assert run_script("wispsub", path, "--scale", "0.5", "--template_dir", templates) == 0
    with datamodels.ImageModel(path) as model:
        assert "template=WISP_NRCA3_F150W_CLEAR.fits" in history.entries(model, "wispsub")[0]


def test_detector_without_wisps_is_left_alone(nrca1, tmp_path):
    path = copy_rate(nrca1["rate"], tmp_path)
    before = open(path, "rb").read()
    assert run_script("wispsub", path, "--fit", "--template_dir", tmp_path / "nowhere") == 0
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]
