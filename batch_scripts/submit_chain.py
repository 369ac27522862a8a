#!/usr/bin/env python
"""Submit every stage job of a batch, each waiting (afterok) for the one before.

    python batch_scripts/submit_chain.py batch/nircam1
    python batch_scripts/submit_chain.py batch/nircam1 --rerun                 # only failed/missing lines
    python batch_scripts/submit_chain.py batch/nircam1 --from_stage image2 --after 123456

Prints one line per job: the stage and its job id. A stage with a failed line
ends its job non-zero, so the stages after it never start. The work is done
by :mod:`ceers_nircam.batch.slurm`.
"""

import sys

from ceers_nircam.batch import slurm
from ceers_nircam.cli import add_options, make_parser, params_from_args, run, setup_logging


def main(argv=None):
    parser = make_parser("Submit the stage jobs of a batch as one afterok chain.",
                         prog="submit_chain.py")
    parser.add_argument("chain", help="batch folder (its slurm/chain.txt) or a chain.txt file")
    args = add_options(parser, slurm.SubmitOptions).parse_args(argv)
    setup_logging(args.verbose)
    jobs = slurm.submit_chain(slurm.read_chain(args.chain),
                              params_from_args(slurm.SubmitOptions, args))
    for stage, job in jobs:
        print(f"{stage} {job}")


if __name__ == "__main__":
    sys.exit(run(main))
