#!/usr/bin/env python
"""Mosaic: Image3 with only Resample (square kernel, pixfrac 1, ivm weights) onto a fixed grid.

Drizzles the _match members of a _final association onto the pointing's
DR0.5 grid (or --grid NAME/FILE, --cover images, or explicit --crval ...),
through strun and a parameter file for the installed jwst, giving
<output_dir>/<product>_i2d.fits. Usage and examples: stage3.md.
"""

import dataclasses
import os
import sys

from ceers_nircam import cli, fitsio, history, pipeline
from ceers_nircam.steps import associations, mosaic

STEP = "make_mosaic"
log = cli.get_logger(STEP)


def _main(argv):
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("association", help="a _final association, e.g. nircam1_f150w_final.json")
    args = cli.add_options(parser, mosaic.MosaicParams).parse_args(argv)
    cli.setup_logging(args.verbose)
    params = cli.params_from_args(mosaic.MosaicParams, args)
    product, members = associations.members(args.association)
    for path in members:
        if not os.path.exists(path):
            raise cli.CeersError(f"{args.association}: member {path} does not exist")
        fitsio.require_nircam(associations.primary_header(path), path)
    grid = mosaic.choose_grid(params, product)
    out = os.path.join(params.output_dir, f"{product}_i2d.fits")
    if not params.overwrite and os.path.exists(out) and history.already_done(out, STEP):
        log.info("%s is already complete: nothing to do (--overwrite to redo)", out)
        return 0
    if params.save_grid:
        grid.write(params.save_grid)
    settings = mosaic.mosaic_settings(grid, params.kernel, params.pixfrac, params.weight_type)
    parfile = pipeline.ensure_parameter_file(settings, params.parameter_file,
                                             os.path.dirname(args.association) or ".")
    entry = {"association": os.path.basename(args.association), **dataclasses.asdict(grid),
             "kernel": params.kernel, "pixfrac": params.pixfrac, "weight_type": params.weight_type,
             "parameter_file": os.path.basename(parfile), "jwst": pipeline.jwst_version()}
    products = pipeline.run_strun(parfile, args.association, params.output_dir, step=STEP,
                                  params=entry, edit=mosaic.mark_grid(grid))
    if out not in products:
        raise cli.CeersError(f"{args.association}: strun wrote no {os.path.basename(out)}")
    nx, ny = grid.shape
    log.info("%s: %d images on grid %s (%d x %d pixels) -> %s", product, len(members), grid.name,
             nx, ny, out)
    return 0


def main(argv=None):
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
