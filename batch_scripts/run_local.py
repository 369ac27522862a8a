#!/usr/bin/env python
"""Run batch files on this machine (a laptop or one node) with N workers.

    python batch_scripts/run_local.py batch/nircam1 --workers 4      # every stage, in order
    python batch_scripts/run_local.py batch/nircam1/remstriping.run  # one stage
    python batch_scripts/run_local.py batch/nircam1/image2.rerun.run # only what failed

Lines whose outputs are complete are skipped, so running again resumes. Each
line's log and record go to logs/<stage>/ beside the run file; a stage with
lines not done stops the chain, gets a .rerun.run file and makes the exit
status 1. The work is done by :mod:`ceers_nircam.batch.runner`.
"""

import sys

from ceers_nircam.batch import accounting, runner
from ceers_nircam.cli import add_options, make_parser, params_from_args, run, setup_logging


def main(argv=None):
    parser = make_parser("Run batch files locally with N workers, resumable, with per-line logs.",
                         prog="run_local.py")
    parser.add_argument("paths", nargs="+", help="run files or batch folders (stages.txt order)")
    args = add_options(parser, runner.RunnerOptions).parse_args(argv)
    setup_logging(args.verbose)
    results = runner.run_batch(args.paths, params_from_args(runner.RunnerOptions, args))
    print(accounting.format_table(results))
    for runfile, states in results:
        failures = accounting.format_failures(runfile, states)
        if failures:
            print(failures)
    ran = {rf.path for rf, _ in results}
    complete = all(accounting.all_done(states) for _, states in results)
    return 0 if complete and len(ran) == len(runner.resolve_run_files(args.paths)) else 1


if __name__ == "__main__":
    sys.exit(run(main))
