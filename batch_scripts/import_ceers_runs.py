#!/usr/bin/env python
"""Read per-image values (wisp scales, 1/f thresholds, filters) from CEERS batch folders.

    python batch_scripts/import_ceers_runs.py ceers-nircam/batch_scripts/nircam1 --output nircam1.csv
    python batch_scripts/import_ceers_runs.py DR05/batch_scripts/nircam{1,2,3,6} --output dr05.csv

The CSV (exposure, filter, wisp_scale, thresh) is both the exposure list and
the per-image table of ``make_batch.py --exposures T --table T``. The work is
done by :mod:`ceers_nircam.batch.ceers_import`.
"""

import sys

from ceers_nircam.batch import ceers_import, exposures
from ceers_nircam.cli import add_options, get_logger, make_parser, params_from_args, run, setup_logging

log = get_logger("batch.import")


def main(argv=None):
    parser = make_parser("Read per-image values from CEERS .run files into a CSV table.",
                         prog="import_ceers_runs.py")
    parser.add_argument("directories", nargs="+", help="folders of CEERS .run (and .json) files")
    args = add_options(parser, ceers_import.ImportOptions).parse_args(argv)
    setup_logging(args.verbose)
    options = params_from_args(ceers_import.ImportOptions, args)
    values = ceers_import.import_runs(args.directories)
    exposures.write_values_table(options.output, values)
    log.info("Wrote %s", options.output)


if __name__ == "__main__":
    sys.exit(run(main))
