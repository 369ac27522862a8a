#!/usr/bin/env python
"""Wisp subtraction: RATE updated in place, the original kept as _rate_prewisp.fits.

Subtracts scale x the NIRCam team's wisp template of the image's detector
and filter, with the scale given (--scale) or fitted (--fit). Images of
detectors or filters without wisps are left alone. Usage and examples:
stage1.md.
"""

import dataclasses
import os
import sys

from stdatamodels.jwst import datamodels

from ceers_nircam import cli, fitsio, history, reffiles
from ceers_nircam.steps import wisps

STEP = "wispsub"
log = cli.get_logger(STEP)


def _main(argv):
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("rate", help="a *_rate.fits file")
    args = cli.add_options(parser, wisps.WispParams).parse_args(argv)
    cli.setup_logging(args.verbose)
    params = cli.params_from_args(wisps.WispParams, args)
    params.check()
    header = fitsio.check_fits(args.rate, ["SCI", "DQ", "ERR"])
    fitsio.require_nircam(header, args.rate)
    det, filt = str(header.get("DETECTOR", "")), str(header.get("FILTER", ""))
    if not wisps.applies_to(det, filt):
        log.info("%s: %s %s has no wisps; nothing to do", args.rate, det, filt)
        return 0
    if history.already_done(args.rate, STEP):
        log.info("%s: wisp already subtracted (history holds %s); nothing to do", args.rate, STEP)
        return 0
    if not args.rate.endswith("_rate.fits"):
        raise cli.CeersError(f"{args.rate}: expected a file ending in _rate.fits")
    template_path = wisps.find_template(wisps.template_directory(params.template_dir), det, filt)
    with datamodels.ImageModel(args.rate) as model:
        template = wisps.load_template(template_path, model)
        flat, flat_path = reffiles.flat_field(model) if params.fit else (None, None)
        model, status = wisps.apply(model, params, template, flat)
        fitsio.copy_aside(args.rate, "_rate.fits", "_rate_prewisp.fits")
        entry = {"scale": round(status.values["scale"], 5), "mode": "fit" if params.fit else "manual",
                 "template": os.path.basename(template_path),
                 "flat": os.path.basename(flat_path) if flat_path else None,
                 **{k: v for k, v in dataclasses.asdict(params).items() if k not in ("scale", "fit")}}
        history.record(model, STEP, entry)
        fitsio.save_model(model, args.rate)
    log.info("%s: %s", args.rate, status.message)
    if params.plot and params.fit:
        png = wisps.plot_fit(args.rate[: -len(".fits")] + "_wisp.png", status.products["scales"],
                             status.products["curve"], status.products["coeffs"],
                             status.values["scale"], os.path.basename(args.rate))
        log.info("Fit curve plotted in %s", png)
    return 0


def main(argv=None):
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
