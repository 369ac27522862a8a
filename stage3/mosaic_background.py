#!/usr/bin/env python
"""Mosaic background of one pointing: tiered masks per band, a merged mask, Background2D.

For each mosaic: <stem>_bkgsub1.fits (first background, own tiered mask);
then merged_mask.fits (sources of every band, HST mosaics included with
--hst); then <stem>_mbkgsub1.fits (background with the merged mask, BKGD and
BKGMASK extensions, and the APERNOISE table of empty-aperture noise over ERR;
with --err_radius, ERR rescaled to fit empty apertures of that radius) and a
PNG preview <stem>_mask.png. Usage: stage3.md.
"""

import dataclasses
import os
import sys

from ceers_nircam import cli, history
from ceers_nircam.background import halo_entry
from ceers_nircam.masking import tier_sources
from ceers_nircam.steps import mosaic_background as mb

STEP = "mosaic_background"
log = cli.get_logger(STEP)


def _main(argv):
    parser = cli.make_parser(__doc__.splitlines()[0])
    parser.add_argument("mosaics", nargs="+", help="the pointing's NIRCam _i2d.fits mosaics")
    args = cli.add_options(parser, mb.MosaicBackgroundParams).parse_args(argv)
    cli.setup_logging(args.verbose)
    params = cli.params_from_args(mb.MosaicBackgroundParams, args)
    inputs = mb.check_inputs(args.mosaics, params)
    out_dir = params.output_dir or os.path.dirname(args.mosaics[0]) or "."
    merged_path = os.path.join(out_dir, params.merged_mask)
    products = {m.path: {s: mb.output_path(m.path, s, out_dir) for s in ("bkgsub1", "mbkgsub1")}
                for m in inputs}
    done = mb.complete(products, merged_path, STEP, params.aperture_radii, params.err_radius)
    if not params.overwrite and done:
        log.info("%s: products already complete: nothing to do (--overwrite to redo)", params.pointing)
        return 0
    entry = {"pointing": params.pointing, "config": os.path.basename(params.config) or "built-in",
             "mosaics": ",".join(os.path.basename(m.path) for m in inputs)}
    bits = []
    for m in inputs:
        t0 = mb.time.perf_counter()
        data, off = mb.read_mosaic(m.path)
        bkg, tiers = mb.first_background(data, off, m.params)
        text = history.describe(STEP, {**entry, "band": m.band, **dataclasses.asdict(m.params)})
        mb.write_bkgsub(products[m.path]["bkgsub1"], m.path, data, bkg, tiers, text)
        bits.append(tiers)
        mb.timed(f"{m.band}: {100 * tier_sources(tiers).mean() / max((~off).mean(), 1e-9):.1f}% "
                 f"of the covered pixels masked", t0)
    merged = mb.merge_masks(bits)
    del bits
    mb.write_merged(merged_path, merged, [m.band for m in inputs], history.describe(STEP, entry))
    for m in inputs:
        t0 = mb.time.perf_counter()
        data, off = mb.read_mosaic(m.path)
        bkg, bkgmask, halo = mb.final_background(data, off, merged, m.params)
        text = history.describe(STEP, {**entry, "band": m.band, "merged_mask": params.merged_mask,
                                       **halo_entry(halo), "aperture_radii":
                                       ",".join(f"{r:g}" for r in params.aperture_radii),
                                       "err_radius": f"{params.err_radius:g}"})
        curve = mb.write_subtracted(products[m.path]["mbkgsub1"], m.path, bkg, bkgmask, text,
                                    params.aperture_radii, params.err_radius)
        if curve:
            rescaled = f" (ERR rescaled for r={params.err_radius:g})" if params.err_radius else ""
            log.info("%s: empty-aperture noise / ERR's prediction%s: %s", m.band, rescaled,
                     ", ".join(f"r={c.radius:g} {c.ratio:.3f}" for c in curve))
        if not params.no_png:
            mb.preview(products[m.path]["mbkgsub1"][: -len("_mbkgsub1.fits")] + "_mask.png",
                       data, off, mb.source_pixels(bkgmask),
                       f"{os.path.basename(m.path)}: source mask (merged tiers and bright halos)")
        mb.timed(f"{m.band}: background subtracted -> {products[m.path]['mbkgsub1']}", t0)
    return 0


def main(argv=None):
    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
