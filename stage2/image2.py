#!/usr/bin/env python
"""Image2: calwebb_image2 through strun on one rate file, giving <root>_cal.fits.

The parameter file is written for the installed jwst (default parameters,
resample skipped) unless one is given. One rate file per call, so that a
batch line is one image. Usage and examples: stage2.md.
"""

import os
import sys

from ceers_nircam import cli, fitsio, names, pipeline

STEP = "image2"
log = cli.get_logger(STEP)


def _main(argv):
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("rate", help="a *_rate.fits file")
    args = cli.add_options(parser, pipeline.Image2Params).parse_args(argv)
    cli.setup_logging(args.verbose)
    params = cli.params_from_args(pipeline.Image2Params, args)
    rate = args.rate
    if params.input_dir and not os.path.dirname(rate):
        rate = os.path.join(params.input_dir, rate)
    cal = names.swap_suffix(os.path.join(params.output_dir, os.path.basename(rate)), "rate", "cal")
    fitsio.require_nircam(fitsio.check_fits(rate, ["SCI", "ERR", "DQ"]), rate)
    parfile = pipeline.ensure_parameter_file(pipeline.IMAGE2, params.parameter_file,
                                             params.output_dir)
    products = pipeline.run_strun(parfile, rate, params.output_dir, step=STEP, params={
        "parameter_file": os.path.basename(parfile), "jwst": pipeline.jwst_version()})
    if cal not in products:
        raise cli.CeersError(f"{rate}: calwebb_image2 wrote no {os.path.basename(cal)}")
    log.info("Wrote %s", cal)
    return 0


def main(argv=None):
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
