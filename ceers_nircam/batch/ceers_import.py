"""Per-image values from existing CEERS batch files (DR0.5 ``batch_scripts/``).

The CEERS NIRCam repository carries, per pointing folder, the ``.run`` files
of its reduction (hand-checked wisp scales in ``wisp_subtraction.run``, 1/f
thresholds in ``remstriping.run``) and the Level-3 associations
(``nircam1_f150w.json`` ...) that say each image's filter. :func:`import_runs`
reads them into the per-image table the generator takes, so that generating
from that table gives back the same (step, image, parameters) lines.
"""

import dataclasses
import glob
import json
import os
import re

from .. import names
from ..cli import CeersError, get_logger, option
from .exposures import ImageValues, normalize_filter
from .stages import parse_command

log = get_logger("batch.import")

@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """Options of the import."""

    output: str = option("ceers_values.csv", "CSV table to write")


_ASN_FILTER = re.compile(r"_(f\d{3}[wmn])(?:_[a-z0-9]+)*\.json$", re.IGNORECASE)


def read_run_commands(path):
    """Parsed commands of a ``.run`` file, skipping blank and ``#`` lines.

    Returns
    -------
    list of (int, Command)
        Line number and command.
    """
    out = []
    with open(path, errors="replace") as fh:
        for number, text in enumerate(fh, 1):
            text = text.strip()
            if text and not text.startswith("#"):
                out.append((number, parse_command(text, f"{path}:{number}")))
    return out


def association_filters(directory):
    """Exposure root -> filter, from the association files (``*.json``) of a folder."""
    filters = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        found = _ASN_FILTER.search(os.path.basename(path))
        if not found:
            continue
        filt = normalize_filter(found.group(1), path)
        try:
            with open(path) as fh:
                asn = json.load(fh)
            members = [m["expname"] for p in asn["products"] for m in p["members"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CeersError(f"{path}: not a readable association ({err})") from None
        for expname in members:
            _merge(filters, names.exposure_root(expname), filt, path, "filter")
    return filters


def _merge(table, key, value, where, what):
    if key in table and table[key] != value:
        raise CeersError(f"{where}: {key} has {what} {value!r} here but {table[key]!r} elsewhere")
    table[key] = value


def import_runs(directories):
    """Per-image values from CEERS batch folders.

    Parameters
    ----------
    directories : sequence of str
        Folders holding ``.run`` files (and association ``.json`` files).

    Returns
    -------
    dict
        Exposure root -> ImageValues, for every exposure named by any line.

    Raises
    ------
    CeersError
        If a folder has no ``.run`` file, a line is malformed, or two files
        disagree about an image's value.
    """
    exposures, scales, threshes, filters = set(), {}, {}, {}
    patterns = {True: 0, False: 0}
    for directory in directories:
        runs = sorted(glob.glob(os.path.join(directory, "*.run")))
        if not runs:
            raise CeersError(f"{directory}: no .run files here")
        for path in runs:
            for number, cmd in read_run_commands(path):
                where = f"{path}:{number}"
                if cmd.step in ("wisp_subtraction", "remstriping", "detector1_and_snowballs",
                                "image2", "update_wcs", "skysub_varscale"):
                    exposures.add(cmd.target)
                if cmd.step == "wisp_subtraction":
                    _merge(scales, cmd.target, cmd.params.get("--scale"), where, "wisp scale")
                elif cmd.step == "remstriping":
                    _merge(threshes, cmd.target, cmd.params.get("--thresh"), where, "1/f threshold")
                    patterns["--save_patterns" in cmd.params] += 1
        for root, filt in association_filters(directory).items():
            _merge(filters, root, filt, directory, "filter")
    values = {root: ImageValues(filter=filters.get(root), wisp_scale=scales.get(root),
                                thresh=threshes.get(root)) for root in exposures}
    missing = sum(1 for v in values.values() if v.filter is None)
    log.info("Imported %d exposures: %d wisp scales, %d 1/f thresholds, %d filters%s",
             len(values), sum(v is not None for v in scales.values()),
             sum(v is not None for v in threshes.values()), len(values) - missing,
             f" ({missing} without a filter: no association lists them)" if missing else "")
    if patterns[False]:
        log.warning("%d remstriping lines lack --save_patterns (the generator adds it unless given "
                    "--no_save_patterns)", patterns[False])
    return values
