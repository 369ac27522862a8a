"""Where the wisp fit's error comes from, exposure by exposure, on simulated data.

Run on the output of the demo (or any folder laid out like it: truth and
noiseless files in ``uncals/<detector>/``, Detector1 rate files in
``calibrated/``):

    python docs/wisp_fit_accuracy.py demo_output [--table wisp_fit_accuracy.md]

For every exposure with a wisp it fits the template scale as
``wispsub.py --fit`` does, by DR0.5's median absolute deviation and with the
row offsets fitted too (``--destripe centre``), on the rate as it is and
with parts of the truth taken out: the injected 1/f row and column
patterns, then the sources as well. It also gives what the least-squares
projection of the injected wisp alone comes to over the pixels the fit
uses, plainly and row-centred. The differences from the injected scale
split the error into the 1/f striping, the sources the mask leaves and the
wisp's own departure from its template.
"""

import argparse
import os
import sys

import numpy as np

COLUMNS = (
    ("mad", "DR0.5 fit", {}, "rate"),
    ("mad_centre", "--destripe centre", {"destripe": "centre"}, "rate"),
    ("mad_nostripes", "DR0.5 fit, true striping removed", {}, "no stripes"),
    ("mad_nostripes_nosources", "DR0.5 fit, true striping and sources removed", {}, "wisp and sky"),
    ("wisp_alone", "least squares, injected wisp alone", None, "wisp"),
    ("wisp_alone_centred", "row-centred least squares, injected wisp alone", None, "wisp centred"),
)


def _projection(image, template, use, rows=None):
    """Least-squares scale of ``template`` in ``image`` over ``use`` (row-centred per
    amplifier-row over ``rows`` when given)."""
    from ceers_nircam.steps import wisps

    if rows is not None:
        image, template = wisps.row_centred(image, template, ~use, rows, 4)
        use = use[rows]
    # No clipping: the noiseless wisp has no outliers.
    return wisps.least_squares_scale(image[use], template[use], np.array([0.0]), clip=np.inf)[0]


def measure(exposure):
    """Fitted minus injected scale for every column of :data:`COLUMNS`."""
    from stdatamodels.jwst import datamodels

    from ceers_nircam import reffiles
    from ceers_nircam.masking import dq_mask
    from ceers_nircam.offline import artifacts, validate
    from ceers_nircam.steps import wisps

    truth = exposure.truth
    h = truth["header"]
    with datamodels.ImageModel(exposure.detector1_rate()) as model:
        data, dq, err = model.data.astype(np.float32), model.dq.copy(), model.err.astype(np.float32)
        flat, _ = reffiles.flat_field(model)
        path = wisps.find_template(wisps.template_directory(), h["DETECTOR"], h["FILTER"])
        template = wisps.load_template(path, model)
        substrt = (model.meta.subarray.xstart or 1, model.meta.subarray.ystart or 1)
    stripes = artifacts.striping_image(truth["stripe_rows"], truth["stripe_cols"])
    sources = validate.scene_rate(truth, exposure.ideal, flat)
    excluded = dq_mask(dq) | ~np.isfinite(data) | ~np.isfinite(flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        ff_err = np.where(excluded, np.nan, err / flat).astype(np.float32)

    def flat_fielded(image):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(excluded, np.nan, image / flat).astype(np.float32)

    params = wisps.WispParams(fit=True)
    region = wisps.region_slices(h["DETECTOR"], data.shape, substrt)
    # One source mask for every column (the one the DR0.5 fit finds on the rate).
    mask = excluded | wisps.source_mask(flat_fielded(data), ff_err, excluded, params)
    images = {"rate": data, "no stripes": data - stripes, "wisp and sky": data - stripes - sources}
    s0 = float(h["WISPSCL"])
    out = {}
    for key, _, options, source in COLUMNS:
        if options is not None:
            p = wisps.WispParams(fit=True, **options)
            out[key] = wisps.fit_scale(flat_fielded(images[source]), template, mask, region, p)[0] - s0
            continue
        use = np.zeros(data.shape, bool)
        use[region] = True
        use &= ~mask & np.isfinite(template)
        wisp = flat_fielded(truth["wisp"])
        tpl = np.nan_to_num(template).astype(np.float32)
        rows = region[0] if source == "wisp centred" else None
        out[key] = _projection(np.nan_to_num(wisp), tpl, use, rows) - s0
    out["injected"] = s0
    return out


def table(rows):
    """Markdown table of the measured differences."""
    head = "| exposure | injected | " + " | ".join(label for _, label, _, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for root, r in rows:
        lines.append(f"| {root} | {r['injected']:.3f} | "
                     + " | ".join(f"{r[k]:+.3f}" for k, _, _, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", help="a demo output folder")
    parser.add_argument("--table", help="also write the table (Markdown) to this file")
    args = parser.parse_args(argv)

    from ceers_nircam.offline import cli as offline
    from ceers_nircam.offline.demo_report import exposures

    offline_dir = os.path.join(args.outdir, "offline")
    if os.path.isdir(offline_dir):
        os.environ.update(offline.environment(offline_dir))
    rows = []
    for e in exposures(args.outdir):
        if e.truth["header"]["WISPSCL"]:
            rows.append((e.root, measure(e)))
            print(f"{e.root}: " + ", ".join(f"{k} {v:+.3f}" for k, v in rows[-1][1].items()),
                  flush=True)
    text = table(rows)
    print(text)
    if args.table:
        with open(args.table, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
