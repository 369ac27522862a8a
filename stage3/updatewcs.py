#!/usr/bin/env python
"""Update WCS: apply a saved _tweakreg.asdf to a cal file, giving <root>_tweakreg.fits.

The saved gwcs and its FITS keywords (wcsinfo) replace the image's, so a new
reduction of the same exposure gets the alignment of an earlier one (CEERS's
DR0.5 WCS files included) without rerunning TweakReg. Usage: stage3.md.
"""

import os
import sys

from stdatamodels.jwst import datamodels

from ceers_nircam import cli, fitsio, history, names
from ceers_nircam.steps import astrometry

STEP = "updatewcs"
log = cli.get_logger(STEP)


def _main(argv):
    parser = cli.make_parser(__doc__.splitlines()[0])
    args = cli.add_options(parser, astrometry.UpdateWcsParams).parse_args(argv)
    cli.setup_logging(args.verbose)
    params = cli.params_from_args(astrometry.UpdateWcsParams, args)
    if not params.image:
        raise cli.CeersError("missing required option --image")
    image = params.image
    folder = os.path.dirname(image) or "."
    out = names.swap_suffix(os.path.join(params.output_dir or folder, os.path.basename(image)),
                            "cal", "tweakreg")
    fitsio.require_nircam(fitsio.check_fits(image, ["SCI"]), image)
    root = names.exposure_root(image)
    saved = os.path.join(params.wcs_dir or folder, f"{root}_tweakreg.asdf")
    wcs, wcsinfo, _ = astrometry.load_wcs(saved)
    with datamodels.ImageModel(image) as model:
        try:
            astrometry.apply_wcs(model, wcs, wcsinfo)
        except cli.CeersError as err:
            raise cli.CeersError(f"{saved}: {err}") from None
        model.meta.filename = os.path.basename(out)
        history.record(model, STEP, {"wcs": os.path.basename(saved)})
        fitsio.save_model(model, out)
    log.info("Applied %s to %s: %s", saved, image, out)
    return 0


def main(argv=None):
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
