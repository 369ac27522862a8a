"""Level-3 associations of a CEERS pointing: one per filter, made by jwst's own tools.

Each association is ``asn_from_list`` with the rule DMS_Level3_Base, the
product ``ceers_<set>_<filter>`` and the association id a3001 (the id the
Image3 products carry: ``_a3001_crf.fits``). A pointing's observations come
from the pointing table the downloader uses; a pointing observed in more
than one observation gets one set per observation, the later ones lettered
(pointing 2: observation 2 is ``nircam2``, observation 52 ``nircam2b``), as
CEERS kept them apart. Each set comes in two: ``<set>_<filter>.json``
listing the ``_tweakreg.fits`` files (input of SkyMatch and outlier
detection) and ``<set>_<filter>_final.json`` listing the ``_a3001_match.fits``
files (input of the mosaics).
"""

import dataclasses
import glob
import os
import string
import warnings

from .. import names, survey
from ..cli import CeersError, get_logger, option
from ..download import load_pointings, observations_for

log = get_logger("associations")

ASN_ID = "a3001"
MEMBER_SUFFIX = "tweakreg"
FINAL_SUFFIX = f"{ASN_ID}_match"


@dataclasses.dataclass(frozen=True)
class AssociationParams:
    """Command-line options of stage3/associations.py."""

    pointing: str = option("", "CEERS pointing: nircam1, nircam2, ... or its number (required)")
    input_dir: str = option("calibrated", "directory holding the images")
    output_dir: str = option(".", "where the association files go")
    suffix: str = option("cal", "suffix of the images to look for (cal or tweakreg)")


def pointing_number(text):
    """The number of a pointing given as ``nircam2`` or ``2``."""
    text = str(text).strip().lower()
    number = text[len("nircam"):] if text.startswith("nircam") else text
    if not number.isdigit():
        raise CeersError(f"pointing {text!r}: expected nircamN or N")
    return int(number)


def set_names(pointing, pointings=None):
    """{observation: set name} of a pointing: ``nircamN``, then ``nircamNb``, ``nircamNc`` ..."""
    pointings = load_pointings() if pointings is None else pointings
    observations = observations_for(pointing_number(pointing), pointings)
    letters = [""] + list(string.ascii_lowercase[1:])
    return {obs: f"nircam{pointing_number(pointing)}{letters[i]}"
            for i, obs in enumerate(observations)}


def find_images(input_dir, observations, suffix="cal"):
    """{(observation, filter): [root, ...]} of the NIRCam images of the observations in a directory."""
    from astropy.io import fits

    found = {}
    for obs in observations:
        pattern = os.path.join(input_dir, f"jw{survey.PROGRAM}{obs:03d}*_{suffix}.fits")
        for path in sorted(glob.glob(pattern)):
            try:
                header = fits.getheader(path, 0)
            except (OSError, ValueError) as err:
                raise CeersError(f"{path}: not a readable FITS file ({err})") from None
            instrument = str(header.get("INSTRUME", "")).strip().upper()
            if instrument != "NIRCAM":
                raise CeersError(f"{path}: instrument is {instrument or 'unknown'}, expected NIRCAM")
            filt = str(header.get("FILTER", "")).strip().upper()
            if not filt:
                raise CeersError(f"{path}: no FILTER keyword")
            root = names.exposure_root(path)
            found.setdefault((obs, filt), []).append(root)
    return found


def make_association(roots, product, member_dir, member_suffix):
    """A DMS_Level3_Base association (asn id a3001) of ``<member_dir>/<root>_<suffix>.fits``."""
    from jwst.associations.asn_from_list import asn_from_list
    from jwst.associations.lib.rules_level3_base import DMS_Level3_Base

    if not roots:
        raise CeersError(f"{product}: no members")
    members = [os.path.normpath(os.path.join(member_dir, f"{r}_{member_suffix}.fits")) for r in roots]
    with warnings.catch_warnings():
        # Members with a directory are how CEERS's associations are written.
        warnings.filterwarnings("ignore", message=".*path information.*")
        asn = asn_from_list(members, rule=DMS_Level3_Base, product_name=product)
    asn.data["asn_id"] = ASN_ID  # the rule's default today; set so that it stays a3001
    return asn


def association_json(asn):
    """The JSON text of an association, as jwst writes it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*path information.*")
        return asn.dump(format="json")[1]


def plan(pointing, input_dir, output_dir, suffix="cal", pointings=None):
    """Every association file of a pointing: [(path, association), ...].

    Members are written relative to ``output_dir`` (where Image3 resolves
    them), for example ``calibrated/<root>_tweakreg.fits``.
    """
    names = set_names(pointing, pointings)
    images = find_images(input_dir, list(names), suffix)
    if not images:
        obs = ", ".join(str(o) for o in names)
        raise CeersError(f"no NIRCam *_{suffix}.fits of pointing nircam{pointing_number(pointing)} "
                         f"(observations {obs}) in {input_dir}")
    member_dir = os.path.relpath(input_dir, output_dir)
    out = []
    for (obs, filt), roots in sorted(images.items()):
        stem = f"{names[obs]}_{filt.lower()}"
        product = f"ceers_{stem}"
        out.append((os.path.join(output_dir, f"{stem}.json"),
                    make_association(roots, product, member_dir, MEMBER_SUFFIX)))
        out.append((os.path.join(output_dir, f"{stem}_final.json"),
                    make_association(roots, product, member_dir, FINAL_SUFFIX)))
    return out


def members(asn_path):
    """(product name, [member paths resolved against the association's directory])."""
    import json

    try:
        with open(asn_path) as fh:
            asn = json.load(fh)
    except FileNotFoundError:
        raise CeersError(f"{asn_path}: no such association") from None
    except (OSError, ValueError) as err:
        raise CeersError(f"{asn_path}: not a readable association ({err})") from None
    products = asn.get("products") or []
    names = [m.get("expname") for p in products for m in p.get("members", [])
             if m.get("exptype", "science") == "science"]
    if not names or not all(names):
        raise CeersError(f"{asn_path}: association lists no science members")
    base = os.path.dirname(os.path.abspath(asn_path))
    return products[0].get("name", ""), [os.path.join(base, n) for n in names]


def primary_header(path):
    """The primary header of a member file, read without its data."""
    from astropy.io import fits

    try:
        return fits.getheader(path, 0)
    except (OSError, ValueError) as err:
        raise CeersError(f"{path}: not a readable FITS file ({err})") from None
