#!/usr/bin/env python
"""Write the run files of every reduction stage for one CEERS pointing (or all).

    python batch_scripts/make_batch.py 1                          # from uncals/, into batch/nircam1/
    python batch_scripts/make_batch.py all --exposures table.csv --table table.csv
    python batch_scripts/make_batch.py 2 --table my_values.csv --alignment astrometry --refcat hst.ecsv

One line per image, association or pointing, calling the stage scripts; each
run file has a ``.lines.json`` sidecar naming every line's outputs, and the
folder a ``stages.txt`` giving the execution order. The work is done by
:mod:`ceers_nircam.batch.stages`.
"""

import sys

from ceers_nircam.batch import stages
from ceers_nircam.cli import add_options, make_parser, params_from_args, run, setup_logging


def build_parser():
    parser = make_parser("Write the run files of every stage for a CEERS pointing.",
                         prog="make_batch.py")
    parser.add_argument("pointing", help="CEERS pointing (1, 2, 3, 6, 9, or nircam1 ...) or 'all'")
    return add_options(parser, stages.BatchSettings)


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    for path in stages.generate(args.pointing, params_from_args(stages.BatchSettings, args)):
        print(path)


if __name__ == "__main__":
    sys.exit(run(main))
