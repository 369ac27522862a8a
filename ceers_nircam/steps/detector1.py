"""calwebb_detector1 in two halves around the snowball expansion.

The first half runs the pipeline with its default parameters (references
from CRDS, as always) up to and including the jump step, with ramp fitting
skipped so that the corrected ramp comes back; the second half fits ramps on
the edited ramp and applies the gain scale, as the pipeline would have.
"""

import contextlib
import dataclasses
import logging
import os

from ..cli import CeersError, get_logger, option, quiet_loggers
from .snowballs import SnowballParams

log = get_logger("detector1")

CORES = {"none": "1", "quarter": "quarter", "half": "half", "all": "all"}


@dataclasses.dataclass(frozen=True)
class Detector1Params:
    """Pipeline options of the snowball wrapper (the expansion has its own)."""

    input_dir: str = option("uncals", "directory of the uncal files")
    output_dir: str = option("calibrated", "directory for the ramp and rate files")
    cores: str = option("none", "cores for ramp fitting", choices=tuple(CORES))
    delete_interim: bool = option(False, "delete the ramp, rateints (single integration), "
                                         "fitopt and trapsfilled files at the end")
    expand_large_events: bool = option(False, "use the jump step's own large-event (snowball) "
                                              "expansion instead of the CEERS one")
    overwrite: bool = option(False, "redo an exposure whose rate file is already complete")
    save_mask: bool = option(False, "write <root>_snowmask.fits: the first group in which the "
                                    "snowball expansion flagged each pixel (SNOWMASK, -1: never) "
                                    "and the groups flagged as jumps or saturated (FLAGGRP, a bit "
                                    "per group)")


def run_to_jump(uncal, params):
    """Detector1 up to the jump step; returns the RampModel (ramp_fit and gain_scale skipped)."""
    from jwst.pipeline import Detector1Pipeline

    steps = {
        "ramp_fit": {"skip": True},
        "gain_scale": {"skip": True},
        # Set explicitly either way: production parameter files turn it on for NIRCam.
        "jump": {"expand_large_events": params.expand_large_events},
    }
    try:
        with _pipeline_logs():
            ramp = Detector1Pipeline.call(uncal, steps=steps, save_results=False,
                                          configure_log=False)
    except Exception as err:  # the pipeline and CRDS raise many types; report one line
        raise CeersError(f"{uncal}: calwebb_detector1 failed: {_first_line(err)}") from None
    return ramp


def fit_ramps(ramp, params):
    """Ramp fitting and gain scale on a RampModel; returns (rate, rateints) models."""
    from jwst.gain_scale import GainScaleStep
    from jwst.ramp_fitting import RampFitStep

    try:
        with _pipeline_logs():
            rate, rateints = RampFitStep.call(ramp, maximum_cores=CORES[params.cores],
                                              configure_log=False)
            rate = GainScaleStep.call(rate, configure_log=False)
            if rateints is not None:
                rateints = GainScaleStep.call(rateints, configure_log=False)
    except Exception as err:
        raise CeersError(f"ramp fitting failed: {_first_line(err)}") from None
    return rate, rateints


def interim_paths(output_dir, root, nints=1):
    """Files the snowball wrapper may delete: ramp, fitopt, trapsfilled and (for one
    integration) rateints."""
    suffixes = ["ramp", "fitopt", "trapsfilled"] + (["rateints"] if nints == 1 else [])
    return [os.path.join(output_dir, f"{root}_{s}.fits") for s in suffixes]


def _pipeline_logs():
    """The pipeline's own log lines through ours: warnings only, all of them with -v."""
    if logging.getLogger().level <= logging.DEBUG:
        return contextlib.nullcontext()
    return quiet_loggers("stpipe", "jwst", "stcal", "CRDS", "stdatamodels")


def _first_line(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


@dataclasses.dataclass(frozen=True)
class SnowballWrapperParams(Detector1Params, SnowballParams):
    """Every option of ``stage1/snowball_wrapper.py``: pipeline and expansion."""


def rootname(path, suffix="_uncal.fits"):
    """File name without its directory and ``suffix`` (or ``.fits``)."""
    base = os.path.basename(path)
    for end in (suffix, ".fits"):
        if base.endswith(end):
            return base[: -len(end)]
    return base


def locate(name, directory):
    """An input given by name in ``directory``, or as a path."""
    candidates = [name] if os.path.isabs(name) else [os.path.join(directory, name), name]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise CeersError(f"{candidates[0]}: no such file")
