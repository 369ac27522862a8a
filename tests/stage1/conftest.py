"""Full-frame exposures shared by the stage-1 tests, simulated and calibrated once per session.

- ``nrca1``: NRCA1 F150W (no wisp): snowballs, cosmic rays, striping, a scene
  plus a grid of isolated stars. Detector1 to the jump step runs once (the
  library calls the script makes); the jump flags are kept as the jump step
  left them, so the tests can tell what an expansion added, and expanded
  three ways (ours, DR0.5's two tiers, the pipeline's large events).
- ``nrcb4`` and ``nrca3``: F200W and F150W exposures with wisps, through
  ``snowball_wrapper.py`` (the whole script) and nothing else.

The references come from the synthetic CRDS context; the pipeline is the
real one, with its default parameters.
"""

import os

import pytest

from scratch import shared_dir
from stage1_helpers import run_script, simulate


DR05 = dict(detect_radii=(7.0, 15.0), grow_radii=(7.0, 35.0))


def large_event_flags(ramp, groupdq):
    """The jump step's large-event expansion (its defaults, expand_large_events on) applied to
    jump flags, as the step applies it after finding the jumps."""
    from jwst.jump import JumpStep
    from stcal.jump.jump import flag_large_events

    from ceers_nircam.cli import quiet_loggers
    from ceers_nircam.steps import snowballs

    with quiet_loggers("stpipe", "jwst", "stcal", "CRDS"):
        jump_data = JumpStep(expand_large_events=True)._setup_jump_data(ramp)
        out, _ = flag_large_events(groupdq.copy(), snowballs.JUMP_DET, snowballs.SATURATED, jump_data)
    return out


@pytest.fixture(scope="session")
def nrca1(offline_env, tmp_path_factory):
    """NRCA1 F150W through Detector1 to the jump step once; then the jump flags as they came
    (``before``), with our expansion (``after``; rate ``rate``), with DR0.5's two tiers and
    with the pipeline's large-event expansion, each fitted to a rate."""
    from ceers_nircam import fitsio
    from ceers_nircam.steps import detector1, snowballs

    sim = simulate(shared_dir(tmp_path_factory, "nrca1", __file__), "NRCA1", "F150W", seed=7101,
                   stars=True)
    params = detector1.SnowballWrapperParams()
    ramp = detector1.run_to_jump(sim.uncal, params)
    before = ramp.groupdq.copy()
    flags = {"pipeline": large_event_flags(ramp, before)}
    for name, tiers in (("dr05", snowballs.SnowballParams(**DR05)), ("ours", params)):
        flags[name] = before.copy()
        snowballs.expand_groupdq(flags[name], tiers)
    rates = {}
    for name, gdq in flags.items():
        ramp.groupdq = gdq
        rate, _ = detector1.fit_ramps(ramp, params)
        rates[name] = fitsio.save_model(rate, sim.product("rate", os.path.join(sim.directory, name)))
    ramp.close()
    return dict(sim=sim, before=before, flags=flags, rates=rates, after=flags["ours"],
                rate=rates["ours"])


def _wisp_exposure(tmp_path_factory, detector, filt, scale, seed):
    sim = simulate(shared_dir(tmp_path_factory, detector.lower(), __file__), detector, filt, seed=seed,
                   wisp_scale=scale)
    assert run_script("snowball_wrapper", os.path.basename(sim.uncal), "--input_dir", sim.directory,
                      "--output_dir", os.path.join(sim.directory, "calibrated"), "--save_mask") == 0
    return sim


@pytest.fixture(scope="session")
def nrcb4(offline_env, tmp_path_factory):
    """NRCB4 F200W, wisp template scale 1.2, through snowball_wrapper.py."""
    return _wisp_exposure(tmp_path_factory, "NRCB4", "F200W", 1.2, seed=7102)


@pytest.fixture(scope="session")
def nrca3(offline_env, tmp_path_factory):
    """NRCA3 F150W, wisp template scale 0.6, through snowball_wrapper.py."""
    return _wisp_exposure(tmp_path_factory, "NRCA3", "F150W", 0.6, seed=7103)


