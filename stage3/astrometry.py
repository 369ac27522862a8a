#!/usr/bin/env python
"""Astrometry: align the cal images of one visit and filter with TweakReg.

Sources are found in each image (photutils, windowed centroids); each
detector's dithers are aligned to each other (shifts), then to the absolute
reference catalog. Writes the results table and <root>_tweakreg.fits per image;
with --save_results also _tweakreg.asdf per image and a residual PNG per detector.
Usage and examples: stage3.md.
"""

import os
import sys
import tempfile

from ceers_nircam import cli, fitsio
from ceers_nircam.steps import astrometry

STEP = "astrometry"
log = cli.get_logger(STEP)


def _main(argv):
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", help="the visit's *_cal.fits files in this filter")
    args = cli.add_options(parser, astrometry.AstrometryOptions).parse_args(argv)
    cli.setup_logging(args.verbose)
    opts = cli.params_from_args(astrometry.AstrometryOptions, args)
    opts.check()
    params = astrometry.read_config(opts.config, opts.visit, opts.filter)
    params, notes = astrometry.check_tolerances(params, opts.config, opts.visit, opts.adjust_tolerance)
    for note in notes:
        log.warning(note)
    refcat = astrometry.read_refcat(opts.refcat)
    astrometry.check_inputs(args.images, opts.visit, opts.filter)
    out_dir = opts.output_dir or os.path.dirname(args.images[0]) or "."
    with tempfile.TemporaryDirectory(prefix="ceers_catalogs.") as tmp:
        if opts.catalog_dir:
            os.makedirs(opts.catalog_dir, exist_ok=True)
        models, rows, fits = astrometry.align_visit(args.images, params, opts.refcat,
                                                    opts.catalog_dir or tmp)
    table = astrometry.results_table(rows, opts.visit, opts.filter.upper())
    table_path = os.path.join(out_dir, f"{opts.visit}_{opts.filter.lower()}_tweakreg_results.ecsv")
    with fitsio.atomic_path(table_path) as tmp:
        table.write(tmp, format="ascii.ecsv")
    table.pprint_all()
    log.info("Results table: %s", table_path)
    failed = astrometry.failures(rows)
    if failed:
        raise cli.CeersError(f"{opts.visit} {opts.filter}: fit failed ({'; '.join(failed)}); "
                             f"no aligned image written (results in {table_path})")
    entry = {"visit": opts.visit, "config": os.path.basename(opts.config),
             "refcat": os.path.basename(opts.refcat), "abs_fitgeom": params.abs_fitgeom}
    astrometry.save_products(models, fits, refcat, out_dir, opts.wcs_dir or out_dir,
                             opts.visit, opts.filter.upper(), entry, opts.save_results)
    log.info("Wrote %d aligned images to %s", len(models), out_dir)
    return 0


def main(argv=None):
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
