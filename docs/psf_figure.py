"""Figure of the simulator's F200W and F444W PSFs on a log stretch.

Run by hand:

    python docs/psf_figure.py [--output docs/psf_f200w_f444w.png] [--cache-dir DIR]

Top row: whole stamps (they hold 99% of the flux); bottom row: the central
arcsecond. Each pixel is the share of the total flux it receives.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from ceers_nircam.offline.psf import effective_psf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(HERE, "psf_f200w_f444w.png"))
    parser.add_argument("--cache-dir", default=None, help="PSF cache (default $CEERS_PSF_CACHE)")
    args = parser.parse_args()

    fig, axes = plt.subplots(2, 2, figsize=(11, 10.5), constrained_layout=True)
    for column, filt in enumerate(("F200W", "F444W")):
        psf = effective_psf(filt, args.cache_dir)
        kernel = psf.kernel()
        for row, zoom in enumerate((psf.halfsize, int(round(1.0 / psf.pixel_scale)))):
            mid = psf.halfsize
            cut = kernel[mid - zoom:mid + zoom + 1, mid - zoom:mid + zoom + 1]
            extent = np.array([-1, 1, -1, 1]) * (zoom + 0.5) * psf.pixel_scale
            ax = axes[row, column]
            shown = ax.imshow(np.clip(cut, 1e-9, None), origin="lower", extent=extent,
                              norm=LogNorm(1e-9 if row == 0 else 1e-7, kernel.max()),
                              cmap="magma", interpolation="nearest")
            ax.set_xlabel("x (arcsec)")
            ax.set_ylabel("y, along V3 (arcsec)")
            what = f"stamp, holding {psf.fraction:.4f} of the flux" if row == 0 else "central arcsec"
            ax.set_title(f"{filt} ({what})\nFWHM {psf.fwhm():.3f} arcsec", fontsize=10)
            fig.colorbar(shown, ax=ax, shrink=0.85, label="share of total flux per pixel")
    fig.savefig(args.output, dpi=90)
    print(args.output)


if __name__ == "__main__":
    main()
