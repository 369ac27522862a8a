#!/usr/bin/env python
"""Write a SLURM job script per stage of a batch, for TACC's launcher, pylauncher or GNU parallel.

    python batch_scripts/make_slurm.py batch/nircam1 --launcher tacc --account AST12345 \\
        --partition normal --nodes 2 --tasks 48 --time 04:00:00 --stage_tasks make_mosaics=4
    python batch_scripts/make_slurm.py batch/nircam1 --launcher parallel --tasks 16 \\
        --setup "source $HOME/ceers/.venv/bin/activate"

Scripts go to <batch>/slurm/NN_<stage>.slurm with chain.txt giving their
order; submit them with submit_chain.py. The work is done by
:mod:`ceers_nircam.batch.slurm`.
"""

import sys

from ceers_nircam.batch import slurm
from ceers_nircam.cli import add_options, make_parser, params_from_args, run, setup_logging


def main(argv=None):
    parser = make_parser("Write SLURM job scripts for the stages of a batch.", prog="make_slurm.py")
    parser.add_argument("paths", nargs="+", help="run files or batch folders (stages.txt order)")
    parser.add_argument("--out_dir", help="folder for the scripts (default <batch>/slurm)")
    args = add_options(parser, slurm.SlurmSettings).parse_args(argv)
    setup_logging(args.verbose)
    for script in slurm.write_job_scripts(args.paths, params_from_args(slurm.SlurmSettings, args),
                                          args.out_dir):
        print(script)


if __name__ == "__main__":
    sys.exit(run(main))
