"""Full-frame exposures shared by the stage-1 tests, simulated and calibrated once per session.

- ``nrca1``: NRCA1 F150W (no wisp): snowballs, cosmic rays, striping, a scene
  plus a grid of isolated stars. Detector1 to the jump step runs once; the
  jump flags before the CEERS expansion are kept so the tests can tell what
  the expansion added; the same exposure also goes through
  ``snowball_wrapper.py --expand_large_events`` for the pipeline's own
  expansion.
- ``nrcb4`` and ``nrca3``: F200W and F150W exposures with wisps, through
  ``snowball_wrapper.py`` (the whole script) and nothing else.

The references come from the synthetic CRDS context; the pipeline is the
real one, with its default parameters.
"""

import os

import pytest

from stage1_helpers import run_script, simulate


@pytest.fixture(scope="session")
def nrca1(offline_env, tmp_path_factory):
    """NRCA1 F150W: our expansion (library calls, flags before and after kept) and the
    pipeline's large-event expansion (the script)."""
    from ceers_nircam import fitsio
    from ceers_nircam.steps import detector1, snowballs

    sim = simulate(tmp_path_factory.mktemp("nrca1"), "NRCA1", "F150W", seed=7101, stars=True)
    params = detector1.SnowballWrapperParams()
    ramp = detector1.run_to_jump(sim.uncal, params)
    before = ramp.groupdq.copy()
    ramp, status = snowballs.apply(ramp, params)
    after = ramp.groupdq.copy()
    rate, _ = detector1.fit_ramps(ramp, params)
    rate_path = fitsio.save_model(rate, sim.product("rate"))
    ramp.close()
    assert run_script("snowball_wrapper", sim.uncal, "--expand_large_events", "--output_dir",
                      os.path.join(sim.directory, "large_events")) == 0
    return dict(sim=sim, before=before, after=after, rate=rate_path, status=status,
                pipeline_rate=sim.product("rate", os.path.join(sim.directory, "large_events")),
                pipeline_ramp=sim.product("ramp", os.path.join(sim.directory, "large_events")))


def _wisp_exposure(tmp_path_factory, detector, filt, scale, seed):
    sim = simulate(tmp_path_factory.mktemp(detector.lower()), detector, filt, seed=seed,
                   wisp_scale=scale)
    assert run_script("snowball_wrapper", os.path.basename(sim.uncal), "--input_dir", sim.directory,
                      "--output_dir", os.path.join(sim.directory, "calibrated")) == 0
    return sim


@pytest.fixture(scope="session")
def nrcb4(offline_env, tmp_path_factory):
    """NRCB4 F200W, wisp template scale 1.2, through snowball_wrapper.py."""
    return _wisp_exposure(tmp_path_factory, "NRCB4", "F200W", 1.2, seed=7102)


@pytest.fixture(scope="session")
def nrca3(offline_env, tmp_path_factory):
    """NRCA3 F150W, wisp template scale 0.6, through snowball_wrapper.py."""
    return _wisp_exposure(tmp_path_factory, "NRCA3", "F150W", 0.6, seed=7103)


