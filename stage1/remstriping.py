#!/usr/bin/env python
"""1/f striping removal: RATE updated in place, the original kept as _rate_pre1f.fits.

Measures the per-amplifier row pattern and the column pattern on a
flat-fielded, source-masked copy and subtracts them. The source mask is
saved as _rate_1fmask.fits (and reused when present); --save_patterns
writes _rate_horiz.fits and _rate_vert.fits. Usage and examples: stage1.md.
"""

import dataclasses
import os
import sys

from stdatamodels.jwst import datamodels

from ceers_nircam import cli, fitsio, history, reffiles
from ceers_nircam.background import halo_entry
from ceers_nircam.steps import striping

STEP = "remstriping"
log = cli.get_logger(STEP)


def _main(argv):
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("rate", help="a *_rate.fits file")
    args = cli.add_options(parser, striping.StripingParams).parse_args(argv)
    cli.setup_logging(args.verbose)
    params = cli.params_from_args(striping.StripingParams, args)
    fitsio.require_nircam(fitsio.check_fits(args.rate, ["SCI", "DQ", "ERR"]), args.rate)
    if not args.rate.endswith("_rate.fits"):
        raise cli.CeersError(f"{args.rate}: expected a file ending in _rate.fits")
    if history.already_done(args.rate, STEP):
        log.info("%s: striping already removed (history holds %s); nothing to do", args.rate, STEP)
        return 0
    stem = args.rate[: -len(".fits")]
    mask_path = stem + "_1fmask.fits"
    with datamodels.ImageModel(args.rate) as model:
        flat, flat_path = reffiles.flat_field(model)
        bits = None
        if os.path.exists(mask_path) and not params.remake_mask:
            bits = striping.read_mask(mask_path, model.data.shape)
            log.info("Reusing the source mask %s", mask_path)
        before = model.data.copy() if params.plot else None
        model, status = striping.apply(model, params, flat, bits)
        if params.plot:
            png = striping.plot_patterns(stem + "_1f.png", before, model.data, status.products,
                                         os.path.basename(args.rate))
            log.info("QA figure: %s", png)
        fitsio.copy_aside(args.rate, "_rate.fits", "_rate_pre1f.fits")
        if bits is None:
            striping.write_mask(mask_path, status.products["mask"])
        if params.save_patterns:
            striping.write_patterns(stem, status.products)
        history.record(model, STEP, {**dataclasses.asdict(params), "flat": os.path.basename(flat_path),
                                     "pedestal": round(status.values["pedestal"], 6),
                                     "fallback_rows": status.values["fallback_rows"],
                                     **halo_entry(status.products.get("halo"))})
        fitsio.save_model(model, args.rate)
    log.info("%s: %s", args.rate, status.message)
    return 0


def main(argv=None):
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
