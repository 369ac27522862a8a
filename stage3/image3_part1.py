#!/usr/bin/env python
"""Image3 part 1: SkyMatch and OutlierDetection through strun on one association.

SkyMatch measures the sky of every member (local, mode) without subtracting
it; OutlierDetection flags what single exposures left (cosmic rays, snowball
wings) with the installed pipeline's defaults; each member becomes
<root>_a3001_crf.fits. Usage and examples: stage3.md.
"""

import os
import sys

from ceers_nircam import cli, fitsio, pipeline
from ceers_nircam.steps import associations

STEP = "image3_part1"
log = cli.get_logger(STEP)


def _main(argv):
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("association", help="a Level-3 association, e.g. nircam1_f150w.json")
    args = cli.add_options(parser, pipeline.Image3Part1Params).parse_args(argv)
    cli.setup_logging(args.verbose)
    params = cli.params_from_args(pipeline.Image3Part1Params, args)
    product, members = associations.members(args.association)
    aligned = {}  # each member's astrometry status, which Image3 would overwrite with SKIPPED
    for path in members:
        if not os.path.exists(path):
            raise cli.CeersError(f"{args.association}: member {path} does not exist")
        header = associations.primary_header(path)
        fitsio.require_nircam(header, path)
        aligned[os.path.basename(path).rsplit("_", 1)[0]] = header.get("S_TWKREG")
    parfile = pipeline.ensure_parameter_file(pipeline.IMAGE3_PART1, params.parameter_file,
                                             os.path.dirname(args.association) or ".")
    entry = {"association": os.path.basename(args.association),
             "parameter_file": os.path.basename(parfile), "jwst": pipeline.jwst_version()}
    products = pipeline.run_strun(parfile, args.association, params.output_dir, step=STEP,
                                  params=entry, edit=pipeline.keep_member_status(aligned))
    crf = [p for p in products if p.endswith(f"_{associations.ASN_ID}_crf.fits")]
    if len(crf) != len(members):
        raise cli.CeersError(f"{args.association}: {len(crf)} _crf files for {len(members)} members")
    log.info("%s: wrote %d _%s_crf.fits files to %s", product, len(crf), associations.ASN_ID,
             params.output_dir)
    return 0


def main(argv=None):
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
