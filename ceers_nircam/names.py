"""File names of the reduction: exposure roots and product suffixes, in one place.

Every product of an exposure is ``<root>_<suffix>.fits``, where the root is
the JWST exposure name (``jw01345001001_02201_00001_nrca1``) and the suffix
says which step wrote it (``uncal``, ``rate``, ``rate_pre1f``, ``cal``,
``tweakreg``, ``a3001_crf``, ``a3001_match`` ...). Associations and mosaics
are named by pointing group (``nircam1``, ``nircam2b``) and filter. Steps, the
batch generator and the demo build names with these helpers rather than by
string surgery.
"""

import os
import re

from .cli import CeersError

# jw<program 5><observation 3><visit 3>_<visit group 2><parallel 1><activity 2>_<exposure 5>_<detector>
_EXPOSURE = re.compile(
    r"^jw(?P<program>\d{5})(?P<observation>\d{3})(?P<visit>\d{3})_(?P<sequence>\d{5})_"
    r"(?P<exposure>\d{5})_(?P<detector>nrc[ab](?:[1-4]|long))(?=_|\.|$)",
    re.IGNORECASE)


def exposure_root(name):
    """The exposure root of a file name or path.

    Parameters
    ----------
    name : str
        A path, file name or root, e.g.
        ``calibrated/jw01345001001_02201_00001_nrca1_rate.fits``.

    Returns
    -------
    str
        The root in lower case, e.g. ``jw01345001001_02201_00001_nrca1``.

    Raises
    ------
    CeersError
        If the name does not start with a JWST exposure name.
    """
    base = os.path.basename(str(name).strip())
    found = _EXPOSURE.match(base)
    if not found:
        raise CeersError(f"{name!r} is not a JWST exposure name "
                         "(expected jwPPPPPOOOVVV_GGSAA_EEEEE_<detector>...)")
    return found.group(0).lower()


def exposure_parts(name):
    """Program, observation, visit, visit id and detector of an exposure.

    Returns
    -------
    dict
        ``program`` (str, ``'01345'``), ``observation`` (int), ``visit`` (int),
        ``visit_id`` (``'jw01345001001'``) and ``detector`` (``'NRCA1'``).
    """
    root = exposure_root(name)
    found = _EXPOSURE.match(root)
    return {"program": found["program"], "observation": int(found["observation"]),
            "visit": int(found["visit"]), "visit_id": root.split("_")[0],
            "detector": found["detector"].upper()}


def product(root, suffix, directory=None):
    """Path of an exposure's product: ``[directory/]<root>_<suffix>.fits``."""
    name = f"{exposure_root(root)}_{suffix}.fits"
    return os.path.join(directory, name) if directory not in (None, "", ".") else name


def swap_suffix(path, old, new):
    """``..._<old>.fits`` -> ``..._<new>.fits`` (``_rate`` -> ``_rate_pre1f``, ``_cal`` -> ``_tweakreg``).

    Raises
    ------
    CeersError
        If ``path`` does not end in ``_<old>.fits``.
    """
    path = os.fspath(path)
    tail = f"_{old}.fits"
    if not path.endswith(tail):
        raise CeersError(f"{path}: expected a file ending in {tail}")
    return path[: -len(tail)] + f"_{new}.fits"


def association(group, filt, final=False, directory=None):
    """Level-3 association file of a pointing group and filter: ``nircam1_f150w[_final].json``."""
    name = f"{group}_{filt.lower()}{'_final' if final else ''}.json"
    return os.path.join(directory, name) if directory not in (None, "", ".") else name


def mosaic(group, filt, suffix="i2d", directory=None):
    """Mosaic of a pointing group and filter: ``ceers_nircam1_f150w_<suffix>.fits``."""
    name = f"ceers_{group}_{filt.lower()}_{suffix}.fits"
    return os.path.join(directory, name) if directory not in (None, "", ".") else name
