"""CEERS snowball flag expansion of a ramp's GROUPDQ.

The jump step flags a snowball's core edge and bright halo but not its faint
wing, whose charge then biases the slope. CEERS grows the jump flags around
large clusters of jumps, per group plane, in tiers of (detection radius,
grow radius); DR0.5 used (7, 7) and (15, 35):

1. jumps = pixels flagged JUMP_DET; median-filter that boolean plane with a
   disk of the detection radius, which keeps only large groups of jumps
   (here the pixels that saturate in the group count as jumps too, see
   :func:`saturation_onsets`; ``--legacy_saturated_cores`` leaves them out);
2. saturated pixels within the detection radius of what survived (the
   saturated core the jump step cannot flag) join the jumps, and the median
   filter is applied again;
3. what survives is dilated by a disk of the grow radius;
4. the tiers are ORed and JUMP_DET is ORed into GROUPDQ there.

The default here is the first tier alone. On simulated exposures with
flight-like snowballs (halo radii 7-28 pixels, about 50 per 1000 s) and
cosmic rays it flags every core and halo from the onset just as DR0.5's two
tiers do, and gives the same rates in the snowball footprints, while the
second tier's 35-pixel growth flags ten times more pixels beyond the
snowballs' faint wings (4% of the detector rather than 0.4%); the test
suite prints both. ``--detect_radii 7 15 --grow_radii 7 35`` is DR0.5.

:func:`expand_plane_plain` is that algorithm written with scipy filters over
the whole plane (about 160 s for a 9-group full frame).
:func:`expand_plane` gives the identical result in about a second: the
median of a boolean plane over a disk of n pixels is True exactly where more
than n/2 of them are True, which is a count; a box count from an integral
image bounds the disk count from above, so only the few windows where jumps
cluster need the exact count.
"""

import dataclasses
import time

import numpy as np
from scipy import ndimage
from stdatamodels.jwst.datamodels import dqflags

from ..cli import get_logger, option
from ..masking import dilate_disk, disk, disk_count
from . import Status

log = get_logger("snowballs")

JUMP_DET = dqflags.group["JUMP_DET"]
SATURATED = dqflags.group["SATURATED"]
DO_NOT_USE = dqflags.group["DO_NOT_USE"]


@dataclasses.dataclass(frozen=True)
class SnowballParams:
    """Parameters of the CEERS snowball expansion (DR0.5's two tiers: see the module)."""

    detect_radii: tuple = option((7.0,), "detection radius of each tier (pixels; DR0.5: 7 15)",
                                 nargs="+", type=float)
    grow_radii: tuple = option((7.0,), "grow radius of each tier (pixels; DR0.5: 7 35)",
                               nargs="+", type=float)
    legacy_jump_test: bool = option(False, "test jump flags as dq == JUMP_DET exactly (the "
                                           "original; misses pixels carrying another flag too)")
    legacy_saturated_cores: bool = option(False, "count only jump flags in the first median "
                                                 "filter (the original; a snowball whose "
                                                 "saturated core fills half the detection disk "
                                                 "is then never expanded)")

    def __post_init__(self):
        if len(self.detect_radii) != len(self.grow_radii):
            raise ValueError("detect_radii and grow_radii need one value per tier each")

    @property
    def tiers(self):
        return tuple(zip(self.detect_radii, self.grow_radii))


def jump_plane(gdq, legacy=False):
    """Pixels of a GROUPDQ plane flagged as jumps (bitwise, or the exact legacy test)."""
    return gdq == JUMP_DET if legacy else (gdq & JUMP_DET) != 0


def saturation_onsets(sat, sat_before):
    """Pixels that saturate in this group and did not in the group before.

    Such a pixel jumped into saturation, but the jump step cannot flag it: a
    saturated group has no usable difference. A snowball's core saturates at
    once, so without these its jump flags are only the ring around the core,
    and when the core fills half the detection disk no median survives.
    """
    return sat & ~sat_before


def _majority(footprint):
    """Count of True pixels above which a median over ``footprint`` is True.

    scipy's median filter takes element ``n // 2`` of the sorted values, so
    a boolean median is True when at least ``n - n // 2`` values are True.
    """
    n = int(footprint.sum())
    return n - n // 2


def expand_plane_plain(jumps, sat, tiers):
    """The CEERS expansion of one group plane with plain scipy filters (slow reference)."""
    out = np.zeros(jumps.shape, dtype=bool)
    for detect, grow in tiers:
        fp = disk(detect)
        first = ndimage.median_filter(jumps.view(np.uint8), footprint=fp, mode="reflect") > 0
        seeds = jumps | (sat & ndimage.binary_dilation(first, fp))
        second = ndimage.median_filter(seeds.view(np.uint8), footprint=fp, mode="reflect") > 0
        if second.any():
            out |= ndimage.binary_dilation(second, disk(grow))
    return out


def _block_counts(plane, block):
    """Number of True pixels in each ``block`` x ``block`` cell (edge cells zero-padded)."""
    ny, nx = plane.shape
    by, bx = -(-ny // block), -(-nx // block)
    cells = np.zeros((by * block, bx * block), dtype=np.uint8)
    cells[:ny, :nx] = plane
    # Two one-axis sums: much faster than one sum over two strided axes.
    rows = cells.reshape(by, block, bx * block).sum(axis=1, dtype=np.int16)
    return rows.reshape(by, bx, block).sum(axis=2, dtype=np.int32)


def _windows(cells, margin, block, offset, shape):
    """Boxes (slice pairs of the image) covering the True cells with ``margin`` pixels to spare.

    ``cells`` is a grid of ``block``-pixel cells whose origin lies ``offset``
    pixels before the image's; nearby cells are grouped by labelling the grid
    grown by the margin, so that each cluster gets one box.
    """
    grow = -(-int(np.ceil(margin)) // block)
    cells = ndimage.maximum_filter(cells.view(np.uint8), size=2 * grow + 1, mode="constant") > 0
    labels, _ = ndimage.label(cells)
    boxes = []
    for sy, sx in ndimage.find_objects(labels):
        y0, y1 = max(sy.start * block - offset, 0), min(sy.stop * block - offset, shape[0])
        x0, x1 = max(sx.start * block - offset, 0), min(sx.stop * block - offset, shape[1])
        if y1 > y0 and x1 > x0:
            boxes.append((slice(y0, y1), slice(x0, x1)))
    return boxes


def expand_plane(jumps, sat, tiers, block=8):
    """The CEERS expansion of one group plane: identical to
    :func:`expand_plane_plain`, computed only where jumps cluster.

    Parameters
    ----------
    jumps, sat : 2D bool arrays
        Jump-flagged and saturated pixels of one group.
    tiers : sequence of (detection radius, grow radius)
    block : int
        Cell size of the coarse count that finds where jumps cluster.

    Returns
    -------
    2D bool array: where JUMP_DET is to be set.
    """
    out = np.zeros(jumps.shape, dtype=bool)
    if not jumps.any():
        return out
    rmax = max(int(np.floor(d)) for d, _ in tiers)
    # scipy's "reflect" boundary is numpy's "symmetric" padding.
    padded = np.pad(jumps, rmax, mode="symmetric")
    counts = _block_counts(padded, block)
    for detect, grow in tiers:
        fp = disk(detect)
        r, need = fp.shape[0] // 2, _majority(fp)
        # Every disk centred in a cell lies within k cells of it, so the jumps
        # in those (2k+1)^2 cells bound its count from above.
        k = -(-r // block)
        bound = ndimage.uniform_filter(counts.astype(np.float64), size=2 * k + 1,
                                       mode="constant") * (2 * k + 1) ** 2
        candidates = bound >= need - 0.5
        if not candidates.any():
            continue
        # Second-pass survivors lie within 2r of first-pass ones, and grow by the grow radius.
        windows = _windows(candidates, 2 * r + grow, block, rmax, jumps.shape)
        o = rmax - r
        seeds = np.zeros(jumps.shape, dtype=bool)
        survived = []
        for ys, xs in windows:
            sub = padded[ys.start + o:ys.stop + o + 2 * r, xs.start + o:xs.stop + o + 2 * r]
            first = disk_count(sub, detect) >= need
            if first.any():
                survived.append((ys, xs))
                seeds[ys, xs] |= sat[ys, xs] & dilate_disk(first, detect)
        if not survived:
            continue
        # Only a window with first-pass survivors can hold second-pass ones (within 2r of them).
        again = np.pad(jumps | seeds, r, mode="symmetric")
        for ys, xs in survived:
            second = disk_count(again[ys.start:ys.stop + 2 * r, xs.start:xs.stop + 2 * r], detect) >= need
            if second.any():
                out[ys, xs] |= dilate_disk(second, grow)
    return out


def expand_groupdq(groupdq, params=SnowballParams(), plain=False, first_group=None):
    """OR JUMP_DET into ``groupdq`` (nints, ngroups, ny, nx) around snowballs, in place.

    Returns the number of pixel-groups newly flagged. ``first_group``, an int
    array (ny, nx) of -1 if given, receives the first group each pixel was
    newly flagged in (the expansion's own flags, for QA).
    """
    expand = expand_plane_plain if plain else expand_plane
    added = 0
    for i in range(groupdq.shape[0]):
        before = None
        for g in range(groupdq.shape[1]):
            plane = groupdq[i, g]
            sat = (plane & SATURATED) != 0
            jumps = jump_plane(plane, params.legacy_jump_test)
            if before is not None and not params.legacy_saturated_cores:
                jumps |= saturation_onsets(sat, before)
            before = sat
            if not jumps.any():
                continue
            grown = expand(jumps, sat, params.tiers)
            new = grown & ((plane & JUMP_DET) == 0)
            added += int(new.sum())
            plane[grown] |= np.uint8(JUMP_DET)
            if first_group is not None:
                first_group[new & (first_group < 0)] = g
    return added


def flagged_groups(groupdq):
    """Per pixel, a bit for each group of the first integration flagged JUMP_DET or
    SATURATED (uint16; bit g for group g): what the ramp says of them, in two bytes a pixel."""
    flagged = (np.asarray(groupdq[0]) & (JUMP_DET | SATURATED)) != 0
    bits = np.zeros(flagged.shape[1:], dtype=np.uint16)
    for g in range(min(flagged.shape[0], 16)):
        bits |= flagged[g].astype(np.uint16) << np.uint16(g)
    return bits


def apply(model, params=SnowballParams()):
    """Expand the jump flags of a RampModel around snowballs (in place)."""
    t0 = time.perf_counter()
    first_group = np.full(model.groupdq.shape[2:], -1, dtype=np.int16)
    added = expand_groupdq(model.groupdq, params, first_group=first_group)
    seconds = time.perf_counter() - t0
    ngroups = model.groupdq.shape[0] * model.groupdq.shape[1]
    log.info("Snowball expansion: %d pixel-groups newly flagged JUMP_DET (%.3f%% of %d planes) "
             "in %.2f s", added, 100.0 * added / model.groupdq[0].size, ngroups, seconds)
    return model, Status(True, f"{added} pixel-groups newly flagged",
                         values={"added": added, "seconds": seconds},
                         products={"snowmask": first_group,
                                   "flagged_groups": flagged_groups(model.groupdq)})
