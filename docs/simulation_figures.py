"""Figures of what the simulated exposures look like, one per artifact.

Run by hand (builds the offline environment in ``.offline/`` if needed,
simulates one full-frame NRCB4 F150W exposure of 9 groups on the
simulator's defaults plus one bright star, and runs calwebb_detector1):

    python docs/simulation_figures.py [--outdir docs/figures]

Writes PNGs of rate-image cutouts: a snowball (with the pixels the jump
step flagged), the wisp, the 1/f striping, a star with its diffraction
spikes, and a field cutout.
"""

import argparse
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from astropy.stats import sigma_clipped_stats  # noqa: E402
from astropy.table import Table, vstack  # noqa: E402
from matplotlib.colors import AsinhNorm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _exposure(workdir):
    """Simulate and calibrate one exposure; return (rate model, truth dict)."""
    from jwst.pipeline import Detector1Pipeline

    from ceers_nircam.nircam import FILTERS
    from ceers_nircam.offline.simulate import (SimulationConfig, exposure_wcs, load_catalog,
                                               plan_exposures, read_truth, simulate_exposure,
                                               best_references)

    config = SimulationConfig(detectors=("NRCB4",), filters=("F150W",), ndithers=1)
    exp = plan_exposures(config)[0]
    ra, dec = exposure_wcs(config, exp, best_references(exp)["distortion"])(1500.3, 400.6)
    star = Table({"id": [1], "ra": [ra], "dec": [dec], "mag": [17.5], "kind": ["star"],
                  "r_eff": [0.0], "sersic_n": [0.0], "axis_ratio": [1.0], "theta": [0.0]})
    for filt in FILTERS:
        star[f"mag_{filt.lower()}"] = star["mag"]
    catalog = vstack([load_catalog(config), star])
    uncal, truth = simulate_exposure(config, exp, catalog, workdir, os.path.join(workdir, "wisps"))
    return Detector1Pipeline.call(uncal), read_truth(truth)


def _show(ax, image, title, stretch=None, extent=None):
    _, median, std = sigma_clipped_stats(image[np.isfinite(image)], sigma=3.0)
    lo, hi = stretch or (median - 3 * std, median + 10 * std)
    ax.imshow(image, origin="lower", cmap="gray", extent=extent, interpolation="nearest",
              norm=AsinhNorm(linear_width=3 * std, vmin=lo, vmax=hi))
    ax.set_title(title, fontsize=10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=os.path.join(ROOT, "docs", "figures"))
    args = parser.parse_args()
    from ceers_nircam.offline.cli import build, environment

    offline_dir = os.environ.get("CEERS_OFFLINE_DIR", os.path.join(ROOT, ".offline"))
    os.environ.update(environment(offline_dir))
    build(offline_dir, demo=False)
    os.makedirs(args.outdir, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        rate, truth = _exposure(workdir)
    data = np.where(rate.dq & 1, np.nan, rate.data)
    written = []

    def save(fig, name):
        path = os.path.join(args.outdir, name)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    # A snowball: the rate cutout and the pixels the jump step flagged.
    snow = truth["snowballs"]
    ev = snow[np.argmax(snow["halo_radius"])]
    half = int(ev["outer_radius"]) + 10
    x, y = int(ev["x"]), int(ev["y"])
    cut = (slice(max(0, y - half), y + half), slice(max(0, x - half), x + half))
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    _show(axes[0], rate.data[cut], f"snowball in group {ev['group']} (rate)")
    axes[1].imshow((rate.dq[cut] & 4) > 0, origin="lower", cmap="gray")
    axes[1].set_title("JUMP_DET from the pipeline's jump step: the faint wing is missed",
                      fontsize=10)
    save(fig, "snowball.png")

    # The wisp, block-averaged so it stands out of the noise.
    from ceers_nircam.nircam import WISP_REGIONS

    x0, x1, y0, y1 = WISP_REGIONS["NRCB4"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 6))
    blocks = np.nanmedian(data[: 2048 // 8 * 8].reshape(256, 8, 256, 8), axis=(1, 3))
    _show(axes[0], blocks, "NRCB4 F150W rate, 8x8 block medians", extent=(0, 2048, 0, 2048))
    axes[0].add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="orange"))
    axes[1].imshow(truth["wisp"], origin="lower", cmap="magma")
    axes[1].set_title(f"injected wisp: template x {truth['header']['WISPSCL']:.2f}, "
                      f"distorted by {truth['header']['WISPRMS']:.0%} rms", fontsize=10)
    save(fig, "wisp.png")

    # The 1/f striping: a background cutout, and the recorded row patterns.
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    _show(axes[0], data[200:456, 400:656], "rate, 256 x 256 pixels: rows of 1/f striping")
    for amp, row in enumerate(truth["stripe_rows"]):
        axes[1].plot(row[200:456], np.arange(200, 456), lw=0.8, label=f"output {amp + 1}")
    axes[1].set_xlabel("row pattern (DN/s)")
    axes[1].set_ylabel("row")
    axes[1].legend(fontsize=8)
    axes[1].set_title("STRIPE_ROWS truth: common and per-output parts", fontsize=10)
    save(fig, "striping.png")

    # A bright star: diffraction spikes on a log stretch.
    sx, sy, half = 1500, 400, 120
    star = data[sy - half:sy + half + 1, sx - half:sx + half + 1]
    fig, ax = plt.subplots(figsize=(6, 6))
    floor = sigma_clipped_stats(data[np.isfinite(data)])[2]
    ax.imshow(np.log10(np.clip(star - np.nanmedian(data), floor, None)), origin="lower",
              cmap="magma", interpolation="nearest")
    ax.set_title("17.5 mag star, F150W rate (log stretch): six strong and two weak spikes",
                 fontsize=9)
    save(fig, "star.png")

    # The field: a CEERS-deep scene.
    fig, ax = plt.subplots(figsize=(7, 7))
    _show(ax, data[900:1412, 300:812], "field cutout, 512 x 512 pixels (16 arcsec)")
    save(fig, "field.png")
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
