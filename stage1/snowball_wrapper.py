#!/usr/bin/env python
"""Detector1 with CEERS snowball expansion: UNCAL -> <output_dir>/<root>_rate.fits.

calwebb_detector1 runs up to the jump step with ramp fitting skipped; the
jump flags are grown around snowballs (or the jump step's own large-event
flagging does it, with --expand_large_events); then ramp fitting and the
gain scale make the rate file. Usage and examples: stage1.md.
"""

import dataclasses
import os
import sys

from ceers_nircam import cli, fitsio, history
from ceers_nircam.steps import detector1, snowballs

STEP = "snowball_wrapper"
log = cli.get_logger(STEP)


def _main(argv):
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("uncal", help="uncal file name (in --input_dir) or path")
    args = cli.add_options(parser, detector1.SnowballWrapperParams).parse_args(argv)
    cli.setup_logging(args.verbose)
    params = cli.params_from_args(detector1.SnowballWrapperParams, args)
    uncal = detector1.locate(args.uncal, params.input_dir)
    fitsio.require_nircam(fitsio.check_fits(uncal, ["SCI"]), uncal)
    root = detector1.rootname(uncal)
    rate_path = os.path.join(params.output_dir, f"{root}_rate.fits")
    if os.path.exists(rate_path) and history.already_done(rate_path, STEP) and not params.overwrite:
        log.info("%s is complete (history holds %s); nothing to do", rate_path, STEP)
        return 0
    ramp = detector1.run_to_jump(uncal, params)
    if not params.expand_large_events:
        ramp, status = snowballs.apply(ramp, params)
        if params.save_mask:
            fitsio.write_images(os.path.join(params.output_dir, f"{root}_snowmask.fits"),
                                {"SNOWMASK": status.products["snowmask"],
                                 "FLAGGRP": status.products["flagged_groups"]})
    if not params.delete_interim:
        fitsio.save_model(ramp, os.path.join(params.output_dir, f"{root}_ramp.fits"))
    rate, rateints = detector1.fit_ramps(ramp, params)
    if rateints is not None and not params.delete_interim:
        fitsio.save_model(rateints, os.path.join(params.output_dir, f"{root}_rateints.fits"))
    expansion = "pipeline large events" if params.expand_large_events else "ceers"
    history.record(rate, STEP, {"expansion": expansion, **dataclasses.asdict(params)})
    fitsio.save_model(rate, rate_path)
    if params.delete_interim:
        for path in detector1.interim_paths(params.output_dir, root, ramp.data.shape[0]):
            if os.path.exists(path):
                os.remove(path)
    log.info("Wrote %s", rate_path)
    return 0


def main(argv=None):
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
