#!/usr/bin/env python
"""Sky pedestal, VAR_RNOISE rescaling and variance holes: <root>_a3001_crf.fits -> _match.fits.

Writes the 2D-background-subtracted copy <root>_a3001_bkgsub1.fits (with the
model and the tier mask), removes the sky pedestal, applies the saved WCS if
the image is not yet aligned, rescales VAR_RNOISE to the measured sky
variance and sets zero variances to +inf. The _crf file is not changed.
Usage and examples: stage3.md.
"""

import dataclasses
import os
import sys

from ceers_nircam import cli, fitsio, history
from ceers_nircam.background import halo_entry
from ceers_nircam.steps import skyvar

STEP = "skywcsvar"
EXTENSIONS = ("SCI", "DQ", "ERR", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")
log = cli.get_logger(STEP)


def _main(argv):
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="a <root>_a3001_crf.fits file")
    args = cli.add_options(parser, skyvar.SkyVarParams).parse_args(argv)
    cli.setup_logging(args.verbose)
    params = cli.params_from_args(skyvar.SkyVarParams, args)
    paths = skyvar.product_paths(args.image, params)
    fitsio.require_nircam(fitsio.check_fits(args.image, EXTENSIONS), args.image)
    if history.already_done(args.image, STEP):
        log.info("%s already carries a %s entry: nothing to do", args.image, STEP)
        return 0
    if (not params.overwrite and os.path.exists(paths["match"])
            and history.already_done(paths["match"], STEP)):
        log.info("%s is already complete: nothing to do (--overwrite to redo)", paths["match"])
        return 0
    fmask = skyvar.read_fmask(paths["fmask"], args.image)
    model, applied_wcs = skyvar.open_aligned(args.image, paths["wcs"])
    with model:
        model, status = skyvar.apply(model, params, fmask)
        entry = {**{k: v for k, v in dataclasses.asdict(params).items()
                    if k not in ("mask_dir", "wcs_dir", "output_dir", "overwrite", "plot")},
                 "mask": os.path.basename(paths["fmask"]), "saved_wcs": applied_wcs,
                 **skyvar.history_values(status.values), **halo_entry(status.products["halo"])}
        skyvar.write_bkgsub(paths["bkgsub"], args.image, status.products,
                            history.describe(STEP, {"mask": entry["mask"]}))
        if params.plot:
            skyvar.plot_sky(paths["plot"], status.products, os.path.basename(args.image))
            log.info("QA figure: %s", paths["plot"])
        history.record(model, STEP, entry)
        model.meta.filename = os.path.basename(paths["match"])
        fitsio.save_model(model, paths["match"])
    log.info("%s -> %s (pedestal %.5f MJy/sr, VAR_RNOISE x %.3f)", args.image, paths["match"],
             status.values["pedestal"], status.values["factor"])
    return 0


def main(argv=None):
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
