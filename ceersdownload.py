#!/usr/bin/env python
"""Download CEERS NIRCam products (JWST program 1345) from MAST.

    python ceersdownload.py 1                  # pointing 1, UNCAL files, into ./uncals
    python ceersdownload.py all --sort_files   # the whole program, sorted into nircamN/
    python ceersdownload.py 2 --product-type CAL --dry-run

The work is done by :mod:`ceers_nircam.download`.
"""

import sys

from ceers_nircam import download
from ceers_nircam.cli import make_parser, run, setup_logging


def build_parser():
    """The command-line options; every default matches the original CEERS script."""
    known = ", ".join(str(p) for p in download.known_pointings(download.load_pointings()))
    parser = make_parser("Find and fetch CEERS NIRCam products from MAST, resumable and verified.",
                         prog="ceersdownload.py")
    parser.add_argument("pointing", help=f"CEERS NIRCam pointing ({known}) or 'all' for the whole program")
    parser.add_argument("--download-dir", "--download_dir", dest="download_dir",
                        default=download.DEFAULT_DOWNLOAD_DIR, help="destination directory")
    parser.add_argument("--product-type", "--datatype", dest="product_type", type=str.upper,
                        choices=download.PRODUCT_TYPES, default="UNCAL", help="MAST product type to fetch")
    parser.add_argument("--filters", nargs="+", default=list(download.FILTERS), metavar="FILTER",
                        help="NIRCam filters to fetch (space or comma separated)")
    parser.add_argument("--cleanup", action="store_true",
                        help="move files out of mastDownload/JWST/<obs_id>/ into the download directory")
    parser.add_argument("--sort_files", "--sort-files", dest="sort_files", action="store_true",
                        help="sort files into nircamN/ by their OBSERVTN header (obsNNN/ for observations "
                             "not in the pointing table); implies --cleanup")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="list what would be fetched, with sizes, and download nothing")
    parser.add_argument("--retries", type=int, default=3,
                        help="retries of a failed query or transfer (network errors, HTTP 5xx, short files)")
    parser.add_argument("--retry-delay", dest="retry_delay", type=float, default=5.0,
                        help="seconds before the first retry; doubled for each further one")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    filters = [f.strip().upper() for item in args.filters for f in item.split(",") if f.strip()]
    download.download(args.pointing, download_dir=args.download_dir, product_type=args.product_type,
                      filters=filters, cleanup=args.cleanup, sort_files=args.sort_files,
                      dry_run=args.dry_run, retries=args.retries, delay=args.retry_delay)


if __name__ == "__main__":
    sys.exit(run(main))
