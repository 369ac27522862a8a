"""QA figures: one way to start, show and save a matplotlib figure.

Steps that fit something write their figure on request (``--plot``); the
demo's validation report uses the same helpers. Figures are PNGs written
atomically, drawn off-screen (no display needed on a cluster node).
"""

import numpy as np

from .fitsio import atomic_path


def pyplot():
    """matplotlib.pyplot on the off-screen Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path, dpi=100):
    """Write ``fig`` to ``path`` (PNG) atomically, close it and return the path."""
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path


def limits(image, lo=1.0, hi=99.5):
    """Display range of an image: percentiles of its finite pixels."""
    finite = np.asarray(image)[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    if finite.size > 2_000_000:
        finite = finite[:: finite.size // 2_000_000 + 1]
    vmin, vmax = np.percentile(finite, [lo, hi])
    return float(vmin), float(vmax if vmax > vmin else vmin + 1.0)


def show(ax, image, title="", stretch="linear", vmin=None, vmax=None, cmap="gray"):
    """Draw an image with origin at the lower left, scaled to its percentiles
    (or ``vmin``/``vmax``); ``stretch`` "asinh" brings out faint structure."""
    from matplotlib.colors import AsinhNorm, Normalize

    lo, hi = limits(image)
    vmin, vmax = lo if vmin is None else vmin, hi if vmax is None else vmax
    if stretch == "asinh":
        norm = AsinhNorm(linear_width=max((vmax - vmin) / 20.0, 1e-12), vmin=vmin, vmax=vmax)
    else:
        norm = Normalize(vmin=vmin, vmax=vmax)
    im = ax.imshow(image, origin="lower", cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def overlay(ax, mask, color=(1.0, 0.0, 0.0), alpha=0.45):
    """Shade the True pixels of ``mask`` in ``color`` over an image already drawn."""
    rgba = np.zeros(mask.shape + (4,), dtype=np.float32)
    rgba[mask] = (*color, alpha)
    ax.imshow(rgba, origin="lower", interpolation="nearest")

