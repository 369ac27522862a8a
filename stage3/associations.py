#!/usr/bin/env python
"""Associations: the Level-3 association files of one CEERS pointing, per filter.

Writes <set>_<filter>.json (members _tweakreg.fits) and <set>_<filter>_final.json
(members _a3001_match.fits) for every filter found among the pointing's cal
files; observation 52 of pointing 2 gets its own nircam2b set. Usage and
examples: stage3.md.
"""

import sys

from ceers_nircam import cli, fitsio
from ceers_nircam.steps import associations

log = cli.get_logger("associations")


def _main(argv):
    parser = cli.make_parser(__doc__.splitlines()[0])
    args = cli.add_options(parser, associations.AssociationParams).parse_args(argv)
    cli.setup_logging(args.verbose)
    params = cli.params_from_args(associations.AssociationParams, args)
    if not params.pointing:
        raise cli.CeersError("missing required option --pointing")
    # Every association is built before the first is written.
    planned = associations.plan(params.pointing, params.input_dir, params.output_dir, params.suffix)
    for path, asn in planned:
        with fitsio.atomic_path(path) as tmp:
            with open(tmp, "w") as fh:
                fh.write(associations.association_json(asn))
        nmembers = len(asn["products"][0]["members"])
        log.info("Wrote %s (%s, %d members)", path, asn["products"][0]["name"], nmembers)
    return 0


def main(argv=None):
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
