#!/usr/bin/env python
"""Where a batch stands: per stage, lines done / failed / running / not run.

    python batch_scripts/batch_status.py batch/nircam1
    python batch_scripts/batch_status.py batch/nircam1/remstriping.run --tail 30

Shows the end of each failed line's log and writes, for each stage with lines
not done, <stage>.rerun.run holding only those lines (run it with
run_local.py, or submit_chain.py --rerun). Exit status 0 when every line is
done, 1 otherwise. The work is done by :mod:`ceers_nircam.batch.accounting`.
"""

import sys

from ceers_nircam.batch import accounting
from ceers_nircam.cli import add_options, make_parser, params_from_args, run, setup_logging


def main(argv=None):
    parser = make_parser("Report per-line status of batch files and write rerun files.",
                         prog="batch_status.py")
    parser.add_argument("paths", nargs="+", help="run files or batch folders (stages.txt order)")
    args = add_options(parser, accounting.StatusOptions).parse_args(argv)
    setup_logging(args.verbose)
    results = accounting.report_status(args.paths, params_from_args(accounting.StatusOptions, args))
    return 0 if all(accounting.all_done(states) for _, states in results) else 1


if __name__ == "__main__":
    sys.exit(run(main))
