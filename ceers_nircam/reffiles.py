"""Reference files from CRDS for steps outside the pipeline.

The wisp fit and the 1/f measurement flat-field a copy of the rate image
with the flat CRDS selects for it, exactly as ``flat_field`` in calwebb_image2
will: same parameters (detector, filter, pupil, date...), same context.
"""

import logging
import os

import numpy as np

from .cli import CeersError, quiet_loggers


def reference_path(model, reftype):
    """Path of the ``reftype`` reference CRDS selects for a datamodel."""
    import crds

    if not os.environ.get("CRDS_PATH"):
        raise CeersError(f"no {reftype} reference: CRDS_PATH is not set (source a CRDS "
                         "environment, e.g. offline/ceers_env.sh)")
    params = model.get_crds_parameters()
    try:
        # CRDS logs its own ERROR line before raising: the one-line error below says it all.
        with quiet_loggers("CRDS", level=logging.CRITICAL):
            refs = crds.getreferences(params, reftypes=[reftype], observatory="jwst")
    except Exception as err:  # CRDS has its own exception tree; one line is enough here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CeersError(f"no {reftype} reference for {_describe(model)}: {first}") from None
    path = refs.get(reftype, "N/A")
    if path.startswith("N/A") or path.startswith("NOT FOUND") or not os.path.exists(path):
        raise CeersError(f"no {reftype} reference for {_describe(model)} ({path})")
    return path


def flat_field(model):
    """The CRDS flat of an image, cut to its subarray, NaN where unusable; and its path."""
    from jwst.lib import reffile_utils
    from stdatamodels.jwst import datamodels

    path = reference_path(model, "flat")
    with datamodels.FlatModel(path) as flat:
        if flat.data.shape != model.data.shape:
            flat = reffile_utils.get_subarray_model(model, flat)
        data = np.array(flat.data, dtype=np.float32)
    data[~(np.isfinite(data) & (data > 0))] = np.nan
    return data, path


def _describe(model):
    ins = model.meta.instrument
    return f"{ins.detector} {ins.filter} {ins.pupil}"
