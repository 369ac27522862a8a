"""Measurements of products against injected truth, shared by tests, benchmarks and the demo.

Snowballs: how much of each injected snowball's core and halo carries flags
from its onset, what the expansion flagged away from every snowball and
cosmic ray, and how well the rate agrees with the truth in the footprints.

Residual striping: per amplifier-row with at least ``min_unmasked`` of its
pixels unmasked, the recovered row value minus the true one, and per column
the same. A constant per amplifier is not striping (it moves freely between
the row pattern, the column pattern and the pedestal), so it is removed from
both. The floor is what a median of the N unmasked pixels of that row (or
column) could reach: 1.25 sigma / sqrt(N).
"""

import dataclasses

import numpy as np
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import dqflags

from . import nircam
from .masking import dilate_square

JUMP = dqflags.group["JUMP_DET"]
SAT = dqflags.group["SATURATED"]
DO_NOT_USE = dqflags.pixel["DO_NOT_USE"]


def onset_coverage(flags, events, ngroups=None, rate=None, header=None):
    """Per snowball: share of its core and halo (light-sensitive pixels) flagged, as a jump or
    saturated, in the groups its charge lands in (the onset group and the next).

    ``flags`` is a ramp's GROUPDQ, or the bits per group of
    :func:`ceers_nircam.steps.snowballs.flagged_groups` (``snowball_wrapper.py --save_mask``
    keeps them), with ``ngroups`` the ramp's number of groups. The halo of a
    snowball arriving in the last group is the part its share of the charge
    makes detectable there (:func:`ceers_nircam.offline.artifacts.recorded_halos`).
    Given the noiseless ``rate`` and the truth ``header``, the halo ends where
    the deposit sinks below what the jump step can see through the local photon
    noise (:func:`ceers_nircam.offline.artifacts.halo_edge_dn`): on the sky that
    is the same halo, on a bright source a smaller one.
    """
    from .offline.artifacts import (detectable_halo, halo_edge_dn, recorded_halos,
                                    snowball_footprint)
    from .steps.snowballs import flagged_groups

    if np.ndim(flags) == 4:
        ngroups, flags = flags.shape[1], flagged_groups(flags)
    recorded = recorded_halos(events, ngroups)
    shape = flags.shape
    edge = None if rate is None else halo_edge_dn(rate, header)[: shape[0], : shape[1]]
    science = ~nircam.reference_pixel_mask()[: shape[0], : shape[1]]
    out = []
    for i, ev in enumerate(recorded):
        inside = snowball_footprint(recorded[[i]], shape, "halo") & science
        if edge is not None:
            inside &= detectable_halo(events[i], shape, edge, ngroups)
        g = int(ev["group"])
        wanted = (1 << g) | (1 << min(g + 1, ngroups - 1))
        out.append(float(np.mean((flags[inside] & wanted) != 0)))
    return np.array(out)


def away_from_events(truth, shape):
    """Pixels outside every snowball's outer footprint and every cosmic-ray hit (and the
    hit's neighbours, which the jump step flags too)."""
    from .offline.artifacts import snowball_footprint

    outside = ~snowball_footprint(truth["snowballs"], shape, "outer")
    hits = np.zeros(shape, dtype=bool)
    hits[np.asarray(truth["cosmic_rays"]["y"]), np.asarray(truth["cosmic_rays"]["x"])] = True
    return outside & ~dilate_square(hits, 3)


def false_flags(before, after, truth):
    """Share of the pixels away from every snowball and cosmic ray that the expansion
    newly flagged in some group, and share of those pixels' groups."""
    outside = away_from_events(truth, before.shape[-2:])
    new = ((after & JUMP) != 0) & ((before & JUMP) == 0)
    return float(np.mean(new.any(axis=(0, 1))[outside])), float(np.mean(new[:, 1:, outside]))


def rate_agreement(rate_path, truth, ideal):
    """Median |rate - truth| / ERR over the snowball footprints (faint wings included)."""
    from .offline.artifacts import snowball_footprint

    with datamodels.ImageModel(rate_path) as rate:
        inside = snowball_footprint(truth["snowballs"], rate.data.shape, "outer")
        use = inside & ((rate.dq & DO_NOT_USE) == 0) & np.isfinite(rate.data) & (rate.err > 0)
        return float(np.median(np.abs(rate.data - ideal)[use] / rate.err[use])), int(use.sum())


@dataclasses.dataclass
class StripingResidual:
    rows: float  # RMS of the row residuals
    rows_floor: float  # RMS of their floors
    cols: float
    cols_floor: float

    @property
    def rows_ratio(self):
        return self.rows / self.rows_floor

    @property
    def cols_ratio(self):
        return self.cols / self.cols_floor

    @property
    def total(self):
        return float(np.hypot(self.rows, self.cols))


def striping_residual(rows, cols, masked, true_rows, true_cols, sigma, min_unmasked=0.2):
    """Residual of recovered row (noutputs, ny) and column (nx) patterns against the truth."""
    ny, nx = masked.shape
    namps = np.atleast_2d(true_rows).shape[0]
    n_row = (~masked).reshape(ny, namps, nx // namps).sum(axis=2).T
    n_col = (~masked).sum(axis=0)
    use_r = n_row >= min_unmasked * (nx // namps)
    use_c = n_col >= min_unmasked * ny
    r = np.where(use_r, rows - true_rows, np.nan)
    r -= np.nanmedian(r, axis=1)[:, None]
    c = np.where(use_c, cols - true_cols, np.nan).reshape(namps, -1)
    c = (c - np.nanmedian(c, axis=1)[:, None]).ravel()

    def rms(a):
        return float(np.sqrt(np.nanmean(np.square(a))))

    return StripingResidual(rms(r[use_r]), rms(1.25 * sigma / np.sqrt(n_row[use_r])),
                            rms(c[use_c]), rms(1.25 * sigma / np.sqrt(n_col[use_c])))


def removed_patterns(before, after, flat, namps=4):
    """Row (per amplifier) and column patterns a correction took out of an image
    (flat-fielded units; medians along each row segment, then each column)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where((before != 0) & (after != 0), (before - after) / flat, np.nan)
    ny, nx = diff.shape
    rows = np.nanmedian(diff.reshape(ny, namps, nx // namps), axis=2).T
    horiz = np.repeat(rows.T, nx // namps, axis=1)
    cols = np.nanmedian(diff - horiz, axis=0)
    return rows, cols


def robust_sigma(values):
    """Standard deviation from the median absolute deviation."""
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def carried_striping(data, dq, flat, scene, background, noutputs=4):
    """Row and column patterns a rate image really carries, and its pixel noise.

    Measured on the image with its noiseless scene (sky, sources, wisp: the
    simulator's ideal image without its striping) subtracted exactly, over
    every unflagged light pixel: the mean of each amplifier-row (clipped at
    5 sigma), then of each column. The simulator's STRIPE_ROWS/COLS are what
    an unweighted slope fit of the injected 1/f noise gives; ramp fitting
    weights a pixel's groups by its signal-to-noise, and at sky levels the
    weighted fit of the same noise gives another pattern. ``background``
    marks source-free pixels, where sigma (per pixel, flat-fielded) is
    measured. Returns (rows, cols, sigma).
    """
    from .steps.striping import PatternStats, measure_patterns

    flagged = (dq != 0) | ~np.isfinite(flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        image = ((data - scene) / flat).astype(np.float32)
    found = measure_patterns(image, flagged | ~np.isfinite(image), noutputs,
                             stats=PatternStats(sigma=5.0), iterations=1)
    sigma = robust_sigma((image - found["horiz"] - found["vert"])[background & ~flagged])
    return found["rows"], found["cols"], sigma


def sky_patterns(sky, masked, noutputs=4):
    """What any row and column method takes from the sky's own slow variation (not
    striping): the patterns of a noiseless sky image over the unmasked pixels.

    Plain means: on noisy data the clipping works at the noise level and keeps
    a slow signal whole, but on a noiseless image it would cut whatever
    departs from a row's or column's median.
    """
    from .steps.striping import PatternStats, measure_patterns

    sky = np.asarray(sky, dtype=np.float32)
    found = measure_patterns(sky - np.median(sky), masked, noutputs, stats=PatternStats(maxiters=0))
    return found["rows"], found["cols"]
