"""The exposures a batch covers, and the per-image values its lines carry.

Exposures come from the raw files present (``uncals/``, searched
recursively, the filter read from each header) or from a list of names (a
text file, one a line, or a CSV with an ``exposure`` column and optionally
``filter``). Per-image values come from a CSV table::

    exposure,filter,wisp_scale,thresh
    jw01345001001_10201_00001_nrca3,F150W,0.57,0.8
    jw01345001001_02201_00001_nrcalong,F277W,,0.2

A blank ``wisp_scale`` means the wisp step fits the scale (``--fit``); a
blank ``thresh`` means the 1/f step's default. Exposure names may be given
as roots or file names. :mod:`.ceers_import` writes such a table from the
CEERS DR0.5 ``.run`` files.
"""

import csv
import dataclasses
import math
import os

from astropy.io import fits

from .. import names
from ..cli import CeersError, get_logger
from ..fitsio import atomic_path
from ..survey import FILTERS

log = get_logger("batch.exposures")

TABLE_COLUMNS = ("exposure", "filter", "wisp_scale", "thresh")


@dataclasses.dataclass(frozen=True)
class Exposure:
    """One raw exposure.

    Attributes
    ----------
    root : str
        Exposure root, ``jw01345001001_02201_00001_nrca1``.
    filter : str or None
        Filter name (``F150W``), None while unknown.
    uncal_dir : str
        Folder of its ``_uncal.fits`` file, relative to the working directory.
    """

    root: str
    filter: str | None = None
    uncal_dir: str = "uncals"

    @property
    def parts(self):
        return names.exposure_parts(self.root)


@dataclasses.dataclass(frozen=True)
class ImageValues:
    """Per-image values of the batch lines (None: not given)."""

    filter: str | None = None
    wisp_scale: float | None = None
    thresh: float | None = None


def normalize_filter(value, where):
    """``f150w`` -> ``F150W``; raise CeersError for a filter CEERS did not use."""
    text = str(value).strip().upper()
    if text not in FILTERS:
        raise CeersError(f"{where}: unknown filter {value!r}; known: {', '.join(FILTERS)}")
    return text


def find_uncals(uncal_dir, workdir="."):
    """Exposures whose ``*_uncal.fits`` files lie under ``uncal_dir`` (searched recursively).

    Parameters
    ----------
    uncal_dir : str
        Folder relative to ``workdir`` (or absolute).
    workdir : str
        The working directory of the batch.

    Returns
    -------
    list of Exposure
        Sorted by root; the filter comes from each file's FILTER keyword. A
        file whose header cannot be read is left out with a warning; of two
        copies of one exposure the first found is kept.
    """
    top = os.path.join(workdir, uncal_dir)
    if not os.path.isdir(top):
        raise CeersError(f"{top}: no such directory of uncal files")
    found = {}
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith("_uncal.fits"):
                continue
            path = os.path.join(folder, name)
            try:
                root = names.exposure_root(name)
                filt = normalize_filter(fits.getval(path, "FILTER", 0), path)
            except (CeersError, OSError, KeyError) as err:
                log.warning("Left out %s: %s", path, err)
                continue
            if root in found:
                log.warning("Left out %s: %s is also in %s", path, root, found[root].uncal_dir)
                continue
            found[root] = Exposure(root, filt, os.path.relpath(folder, workdir))
    return [found[r] for r in sorted(found)]


def _float(value, where, column):
    text = (value or "").strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise CeersError(f"{where}: {column} {text!r} is not a number") from None
    if not math.isfinite(number):
        raise CeersError(f"{where}: {column} {text!r} is not a finite number")
    return number


def _read_csv(path):
    if not os.path.isfile(path):
        raise CeersError(f"{path}: no such table")
    with open(path, newline="") as fh:
        reader = csv.DictReader(row for row in fh if row.strip() and not row.startswith("#"))
        if not reader.fieldnames or "exposure" not in [c.strip() for c in reader.fieldnames]:
            raise CeersError(f"{path}: a table needs an 'exposure' column")
        return [({k.strip(): v for k, v in row.items() if k}, n) for n, row in enumerate(reader, 2)]


def read_values_table(path):
    """Per-image values from a CSV table.

    Returns
    -------
    dict
        Exposure root -> ImageValues.

    Raises
    ------
    CeersError
        If the file is missing, lacks an ``exposure`` column, names an exposure
        twice or holds a value that is not a number or a known filter.
    """
    values = {}
    for row, number in _read_csv(path):
        where = f"{path}:{number}"
        root = names.exposure_root(row.get("exposure") or "")
        if root in values:
            raise CeersError(f"{where}: {root} is listed twice")
        filt = (row.get("filter") or "").strip()
        values[root] = ImageValues(filter=normalize_filter(filt, where) if filt else None,
                                   wisp_scale=_float(row.get("wisp_scale"), where, "wisp_scale"),
                                   thresh=_float(row.get("thresh"), where, "thresh"))
    return values


def write_values_table(path, values):
    """Write per-image values (root -> ImageValues) as a CSV table, sorted by exposure."""
    def text(v):
        return "" if v is None else repr(v) if isinstance(v, float) else str(v)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(TABLE_COLUMNS)
            for root in sorted(values):
                v = values[root]
                writer.writerow([root, text(v.filter), text(v.wisp_scale), text(v.thresh)])
    return path


def read_exposure_list(path, uncal_dir="uncals"):
    """Exposures named in a list: a CSV with an ``exposure`` column, or one name a line.

    Returns
    -------
    list of Exposure
        Sorted by root, with the filter where the list gives one.
    """
    if not os.path.isfile(path):
        raise CeersError(f"{path}: no such exposure list")
    with open(path) as fh:
        first = next((ln for ln in fh if ln.strip() and not ln.startswith("#")), "")
    found = {}
    if "exposure" in [c.strip() for c in first.split(",")]:
        for row, number in _read_csv(path):
            filt = (row.get("filter") or "").strip()
            root = names.exposure_root(row.get("exposure") or "")
            found[root] = Exposure(root, normalize_filter(filt, f"{path}:{number}") if filt else None,
                                   uncal_dir)
    else:
        with open(path) as fh:
            for number, text in enumerate(fh, 1):
                text = text.strip()
                if text and not text.startswith("#"):
                    root = names.exposure_root(text.split()[0])
                    found[root] = Exposure(root, None, uncal_dir)
    return [found[r] for r in sorted(found)]


def with_filters(exposures, values):
    """Exposures with the filter filled from the per-image table where unknown.

    Raises
    ------
    CeersError
        If an exposure's filter is still unknown.
    """
    out, missing = [], []
    for exp in exposures:
        given = values.get(exp.root, ImageValues()).filter
        if exp.filter and given and given != exp.filter:
            log.warning("%s: the table says %s, the file %s; using %s", exp.root, given,
                        exp.filter, exp.filter)
        exp = dataclasses.replace(exp, filter=exp.filter or given)
        (out if exp.filter else missing).append(exp)
    if missing:
        shown = ", ".join(e.root for e in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise CeersError(f"filter unknown for {len(missing)} exposure(s) ({shown}): give a 'filter' "
                         "column in the exposure list or table")
    return out
