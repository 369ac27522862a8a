"""Find and fetch CEERS NIRCam products from MAST.

The steps behind ``ceersdownload.py``, each usable on its own:

1. :func:`load_pointings` and :func:`observations_for` turn a CEERS pointing
   (or ``all``) into JWST program 1345 observation numbers.
2. :func:`query_observations` and :func:`query_products` ask MAST through
   astroquery; :func:`select_products` keeps the science files of one type.
3. :func:`plan_downloads` decides, file by file, what is already complete on
   disk (skipped) and what must be fetched.
4. :func:`fetch_one` fetches one file to a temporary name, checks its size and
   that it reads as FITS, renames it, and retries transient failures with
   back-off (:func:`with_retries`).
5. :func:`cleanup_downloads` flattens astroquery's ``mastDownload`` folders;
   :func:`sort_downloads` files each image under ``nircamN`` by its OBSERVTN.
6. :func:`write_manifest` records what happened in ``manifest.ecsv``.

:func:`download` runs them in order. The MAST server is astroquery's own
setting (``astroquery.mast.conf.server``, e.g. from ``astroquery.cfg``).
"""

import logging
import os
import re
import sys
import time
import warnings

import numpy as np
from astropy.table import MaskedColumn, Table, unique, vstack

from .cli import CeersError, get_logger, progress
from .fitsio import atomic_path, check_fits
from .survey import FILTERS, PROGRAM

log = get_logger("download")

PROPOSAL_ID = PROGRAM.lstrip("0")
INSTRUMENT = "NIRCAM/IMAGE"
PRODUCT_TYPES = ("UNCAL", "RATE", "CAL", "I2D")
DEFAULT_DOWNLOAD_DIR = "uncals"
MANIFEST_NAME = "manifest.ecsv"
MAST_SUBDIR = "mastDownload"
DOWNLOAD_PATH = "/api/v0.1/Download/file"
POINTINGS_FILE = os.path.join(os.path.dirname(__file__), "data", "ceers_pointings.ecsv")

# jw01345001001_02101_00001_nrca1_uncal.fits (exposure) or jw01345-o001_t021_..._i2d.fits (level 3)
_OBSERVATION_PATTERNS = (re.compile(r"^jw\d{5}(\d{3})\d{3}_"), re.compile(r"^jw\d{5}-o(\d{3})_"))


class TransferError(Exception):
    """A file transfer that did not deliver a complete, readable file."""

    def __init__(self, message, transient=True):
        super().__init__(message)
        self.transient = transient


# --------------------------------------------------------------------------- pointings

def load_pointings(path=POINTINGS_FILE):
    """Read the table of CEERS pointings.

    Parameters
    ----------
    path : str, optional
        ECSV file with columns ``pointing``, ``observation``, ``filter``,
        ``nimages`` and ``epoch``; the packaged table by default.

    Returns
    -------
    astropy.table.Table
        One row per pointing, observation and filter. ``filter`` and
        ``nimages`` are masked where they are not known.
    """
    return Table.read(path, format="ascii.ecsv")


def known_pointings(pointings):
    """Sorted list of the pointing numbers in ``pointings``."""
    return sorted({int(p) for p in pointings["pointing"]})


def observations_for(pointing, pointings):
    """Observation numbers making up a pointing.

    Parameters
    ----------
    pointing : str or int
        A pointing number, or ``"all"`` for the whole program.
    pointings : astropy.table.Table
        The table from :func:`load_pointings`.

    Returns
    -------
    list of int or None
        The observation numbers, or ``None`` for ``all``.

    Raises
    ------
    CeersError
        If the pointing is not in the table.
    """
    text = str(pointing).strip().lower()
    if text == "all":
        return None
    known = known_pointings(pointings)
    number = int(text) if text.isdigit() else None
    if number not in known:
        names = ", ".join(str(p) for p in known)
        raise CeersError(f"unknown pointing {pointing!r}; known pointings are {names} or all")
    return sorted({int(o) for o in pointings["observation"][pointings["pointing"] == number]})


def pointing_of(observation, pointings):
    """The pointing an observation belongs to, or ``None`` if it is not in the table."""
    match = pointings["pointing"][pointings["observation"] == int(observation)]
    return int(match[0]) if len(match) else None


def sorted_dir_name(observation, pointings):
    """Folder name for ``--sort_files``: ``nircamN``, or ``obsNNN`` for an unmapped observation."""
    pointing = pointing_of(observation, pointings)
    return f"nircam{pointing}" if pointing is not None else f"obs{int(observation):03d}"


def pointing_group(observation, pointings):
    """Name under which an observation's images are associated and mosaicked.

    A pointing's first observation gives ``nircamN``; its later ones
    ``nircamNb``, ``nircamNc`` ... (observation 52 of pointing 2 is
    ``nircam2b``). ``None`` for an observation missing from the table.
    """
    pointing = pointing_of(observation, pointings)
    if pointing is None:
        return None
    members = sorted({int(o) for o in pointings["observation"][pointings["pointing"] == pointing]})
    index = members.index(int(observation))
    return f"nircam{pointing}" + (chr(ord("a") + index) if index else "")


def observation_number(filename):
    """Observation number encoded in a JWST file or observation name, or ``None``.

    Both exposure names (``jw01345001001_02101_00001_nrca1_uncal.fits``) and
    level-3 names (``jw01345-o001_t021_nircam_clear-f115w_i2d.fits``) carry it.
    """
    base = os.path.basename(str(filename))
    for pattern in _OBSERVATION_PATTERNS:
        found = pattern.match(base)
        if found:
            return int(found.group(1))
    return None


# --------------------------------------------------------------------------- retries

def _transient_status(status):
    """An HTTP status worth retrying: unknown, 5xx, 408 (timeout) or 429 (too many requests)."""
    return status is None or status >= 500 or status in (408, 429)


def is_transient(err):
    """Whether a failure is worth retrying (network trouble, 5xx, 408, 429, bad transfer)."""
    import requests

    if isinstance(err, TransferError):
        return err.transient
    if isinstance(err, requests.HTTPError):
        return _transient_status(err.response.status_code if err.response is not None else None)
    return isinstance(err, requests.RequestException)


def with_retries(func, *, retries=3, delay=5.0, what="request"):
    """Call ``func()``; on a transient failure wait and call it again.

    Parameters
    ----------
    func : callable
        Called with no arguments; its return value is returned.
    retries : int
        How many times to try again after the first failure.
    delay : float
        Seconds before the first retry; each later wait doubles.
    what : str
        Name used in the log messages.

    Raises
    ------
    Exception
        The last failure, once retries are used up, or at once if it is not
        transient (see :func:`is_transient`).
    """
    for attempt in range(retries + 1):
        try:
            return func()
        except Exception as err:
            if attempt >= retries or not is_transient(err):
                raise
            wait = delay * 2**attempt
            log.warning("%s failed (%s); retry %d of %d in %g s", what, err, attempt + 1, retries, wait)
            time.sleep(wait)


# --------------------------------------------------------------------------- MAST queries

def _mast():
    """astroquery's Observations, with its console progress quietened unless logging at DEBUG."""
    from astroquery import log as astroquery_log
    from astroquery.mast import Observations

    if not log.isEnabledFor(logging.DEBUG):
        astroquery_log.setLevel("WARNING")
    return Observations


def _query(func, what, retries, delay):
    from astroquery.exceptions import NoResultsWarning, RemoteServiceError
    import requests

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoResultsWarning)
            return with_retries(func, retries=retries, delay=delay, what=what)
    except (requests.RequestException, RemoteServiceError) as err:
        from astroquery.mast import conf

        raise CeersError(f"{what} failed at {conf.server}: {err}") from None


def query_observations(observations=None, filters=FILTERS, *, retries=3, delay=5.0):
    """Ask MAST for the CEERS NIRCam imaging observations.

    Parameters
    ----------
    observations : list of int or None
        Observation numbers to ask for (one query each, matching MAST
        observation ids ``*oNNN*``); ``None`` asks for the whole program.
    filters : sequence of str
        NIRCam filters.
    retries, delay
        See :func:`with_retries`.

    Returns
    -------
    astropy.table.Table
        MAST observation rows (possibly empty).
    """
    mast = _mast()
    criteria = dict(obs_collection="JWST", proposal_id=PROPOSAL_ID, instrument_name=INSTRUMENT,
                    filters=[f.upper() for f in filters], dataproduct_type="image")
    if observations is None:
        queries = [(f"MAST query for program {PROPOSAL_ID}", criteria)]
    else:
        queries = [(f"MAST query for observation {o}", dict(criteria, obs_id=f"*o{o:03d}*"))
                   for o in observations]
    tables = []
    for what, crit in queries:
        table = _query(lambda crit=crit: mast.query_criteria(**crit), what, retries, delay)
        log.info("%s: %d observations", what, len(table))
        if len(table):
            tables.append(table)
    return vstack(tables) if tables else Table()


def query_products(obs_table, *, retries=3, delay=5.0):
    """Ask MAST for every product of the given observations (duplicates included)."""
    mast = _mast()
    products = _query(lambda: mast.get_product_list(obs_table), "MAST product list", retries, delay)
    log.info("MAST lists %d products for %d observations", len(products), len(obs_table))
    return products


def _text(value):
    return "" if np.ma.is_masked(value) else str(value)


def filter_name(value):
    """The NIRCam filter in a MAST ``filters`` value such as ``F115W`` or ``CLEAR;F444W``."""
    parts = [p.strip().upper() for p in _text(value).split(";") if p.strip()]
    named = [p for p in parts if p in FILTERS] or [p for p in parts if p != "CLEAR"]
    return ";".join(named)


def _product_filters(products, obs_table):
    if "filters" in products.colnames:
        return [filter_name(v) for v in products["filters"]]
    by_obsid = {}
    if obs_table is not None and len(obs_table):
        by_obsid = {_text(i): _text(f) for i, f in zip(obs_table["obsid"], obs_table["filters"])}
    key = "parent_obsid" if "parent_obsid" in products.colnames else "obsID"
    return [filter_name(by_obsid.get(_text(i), "")) for i in products[key]]


def select_products(products, product_type="UNCAL", observations=None, obs_table=None):
    """Keep the science files of one type, once each, from the chosen observations.

    Parameters
    ----------
    products : astropy.table.Table
        MAST product list (:func:`query_products`).
    product_type : str
        ``UNCAL``, ``RATE``, ``CAL`` or ``I2D`` (MAST productSubGroupDescription).
    observations : list of int or None
        Observation numbers to keep; ``None`` keeps all.
    obs_table : astropy.table.Table, optional
        The observations queried, used to name each product's filter when
        the product list has no ``filters`` column.

    Returns
    -------
    astropy.table.Table
        One row per file, sorted by file name, with added columns ``obs``
        (observation number) and ``filter``.
    """
    if not len(products):
        return products
    chosen = _mast().filter_products(products, productType="SCIENCE",
                                     productSubGroupDescription=product_type.upper())
    chosen = Table(chosen, masked=True)
    chosen["filter"] = _product_filters(chosen, obs_table)
    if len(chosen):
        chosen = unique(chosen, keys="productFilename")
    obs = [observation_number(name) for name in chosen["productFilename"]]
    chosen["obs"] = MaskedColumn([o or 0 for o in obs], mask=[o is None for o in obs], dtype=int)
    if observations is not None:
        keep = np.array([o in set(observations) for o in obs], dtype=bool)
        chosen = chosen[keep]
    return chosen


# --------------------------------------------------------------------------- plan / fetch

def _size(value):
    return None if np.ma.is_masked(value) else int(value)


def mast_path(download_dir, product):
    """Where astroquery's download_products puts a product: mastDownload/<collection>/<obs_id>/<file>."""
    return os.path.join(download_dir, MAST_SUBDIR, _text(product["obs_collection"]),
                        _text(product["obs_id"]), _text(product["productFilename"]))


def is_complete(path, size=None):
    """Whether ``path`` holds a finished download: expected size if known, else readable FITS."""
    if not os.path.isfile(path):
        return False
    if size is not None:
        return os.path.getsize(path) == size
    try:
        check_fits(path)
    except CeersError:
        return False
    return True


def plan_downloads(selected, download_dir, pointings):
    """Decide, per selected product, whether a complete copy is already on disk.

    A copy counts wherever this tool may have left it: astroquery's
    ``mastDownload`` layout, flat in ``download_dir`` (``--cleanup``) or in the
    ``nircamN``/``obsNNN`` folder (``--sort_files``).

    Returns
    -------
    list of dict
        Keys ``file``, ``uri``, ``obs``, ``filter``, ``size``, ``path`` (the
        existing copy, or where the download goes) and ``status`` (``skipped``
        for a complete copy, ``pending`` otherwise), ``message``.
    """
    plan = []
    for product in selected:
        name = _text(product["productFilename"])
        obs = None if np.ma.is_masked(product["obs"]) else int(product["obs"])
        size = _size(product["size"]) if "size" in product.colnames else None
        target = mast_path(download_dir, product)
        places = [target, os.path.join(download_dir, name)]
        if obs is not None:
            places.append(os.path.join(download_dir, sorted_dir_name(obs, pointings), name))
        existing = next((p for p in places if is_complete(p, size)), None)
        plan.append(dict(file=name, uri=_text(product["dataURI"]), obs=obs, filter=_text(product["filter"]),
                         size=size, path=existing or target,
                         status="skipped" if existing else "pending", message=""))
    return plan


def fetch_one(uri, dest, size=None, *, retries=3, delay=5.0):
    """Fetch one MAST file to ``dest``, complete or not at all.

    The transfer goes to a temporary name beside ``dest``; it is renamed only
    after its size matches ``size`` (when known) and it reads as FITS. Network
    errors, HTTP 5xx/408/429 and bad transfers are retried with back-off.

    Parameters
    ----------
    uri : str
        MAST data URI, e.g. ``mast:JWST/product/<file>``.
    dest : str
        Final path of the file.
    size : int, optional
        Expected size in bytes.
    retries, delay
        See :func:`with_retries`.

    Raises
    ------
    TransferError, requests.RequestException, OSError
        If the file could not be fetched.
    """
    from astroquery.mast import conf

    mast = _mast()
    base_url = conf.server.rstrip("/") + DOWNLOAD_PATH

    def attempt():
        with atomic_path(dest) as tmp:
            status, message, _ = mast.download_file(uri, local_path=tmp, base_url=base_url, cache=False)
            if status != "COMPLETE":
                # astroquery reports HTTP errors as "HTTPError: 500 Server Error: ..."
                code = re.search(r"HTTPError: (\d{3})", message or "")
                raise TransferError(message or status,
                                    transient=_transient_status(int(code.group(1)) if code else None))
            received = os.path.getsize(tmp)
            if size is not None and received != size:
                raise TransferError(f"received {received} of {size} bytes")
            try:
                check_fits(tmp)
            except CeersError:
                raise TransferError("received file is not readable FITS") from None

    with_retries(attempt, retries=retries, delay=delay, what=os.path.basename(dest))


def fetch_all(plan, *, retries=3, delay=5.0):
    """Fetch every ``pending`` entry of a plan, setting its status to ``fetched`` or ``failed``."""
    import requests

    pending = [entry for entry in plan if entry["status"] == "pending"]
    for entry in progress(pending, log, "fetched"):
        try:
            fetch_one(entry["uri"], entry["path"], entry["size"], retries=retries, delay=delay)
        except (TransferError, requests.RequestException, OSError) as err:
            entry["status"], entry["message"] = "failed", str(err)
            log.error("%s: %s", entry["file"], err)
        else:
            entry["status"] = "fetched"
    return plan


# --------------------------------------------------------------------------- tidy up

def _suffix(product_type):
    return f"_{product_type.lower()}.fits"


def _mast_files(download_dir, product_type):
    root = os.path.join(download_dir, MAST_SUBDIR)
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.join(folder, n) for n in names if n.endswith(_suffix(product_type))]
    return sorted(found)


def _remove_empty_dirs(root):
    if not os.path.isdir(root):
        return
    for folder, _, _ in os.walk(root, topdown=False):
        if not os.listdir(folder):
            os.rmdir(folder)


def _move(path, folder):
    os.makedirs(folder, exist_ok=True)
    dest = os.path.join(folder, os.path.basename(path))
    os.replace(path, dest)
    return dest


def cleanup_downloads(download_dir, product_type="UNCAL"):
    """Move downloaded files out of ``mastDownload/...`` into ``download_dir``.

    Empty folders left under ``mastDownload`` are removed.

    Returns
    -------
    dict
        Old path -> new path for every file moved.
    """
    moved = {path: _move(path, download_dir) for path in _mast_files(download_dir, product_type)}
    _remove_empty_dirs(os.path.join(download_dir, MAST_SUBDIR))
    return moved


def sort_downloads(download_dir, pointings, product_type="UNCAL"):
    """Move downloaded files into ``nircamN`` folders by their OBSERVTN header.

    Files of an observation that is not in the pointing table go to
    ``obsNNN``. Files both under ``mastDownload`` and flat in ``download_dir``
    are sorted; a file whose header cannot be read is left where it is.

    Returns
    -------
    dict
        Old path -> new path for every file moved.
    """
    names = os.listdir(download_dir) if os.path.isdir(download_dir) else []
    flat = sorted(os.path.join(download_dir, n) for n in names if n.endswith(_suffix(product_type)))
    moved = {}
    for path in _mast_files(download_dir, product_type) + flat:
        try:
            observation = int(check_fits(path)["OBSERVTN"])
        except (CeersError, KeyError, ValueError) as err:
            log.warning("%s: not sorted, no usable OBSERVTN (%s)", path, err)
            continue
        moved[path] = _move(path, os.path.join(download_dir, sorted_dir_name(observation, pointings)))
    _remove_empty_dirs(os.path.join(download_dir, MAST_SUBDIR))
    return moved


# --------------------------------------------------------------------------- report

MANIFEST_COLUMNS = ("file", "obs", "filter", "size", "status", "message", "uri")


def write_manifest(plan, download_dir, name=MANIFEST_NAME):
    """Write the plan as ``manifest.ecsv`` (paths relative to ``download_dir``); return its path."""
    table = Table()
    table["file"] = [os.path.relpath(e["path"], download_dir) for e in plan]
    for column in ("obs", "size"):
        values = [e[column] for e in plan]
        table[column] = MaskedColumn([v or 0 for v in values], mask=[v is None for v in values], dtype=np.int64)
    for column in ("filter", "status", "message", "uri"):
        table[column] = [e[column] for e in plan]
    table.meta["comments"] = ["Products of JWST program 1345 requested by ceersdownload.py",
                              "status: fetched, skipped (already complete) or failed"]
    path = os.path.join(download_dir, name)
    with atomic_path(path) as tmp:
        table[list(MANIFEST_COLUMNS)].write(tmp, format="ascii.ecsv")
    return path


def human_size(nbytes):
    """A byte count as B, kB, MB or GB (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def print_plan(plan, out=None):
    """Print what a run would do (to ``out``, default stdout): one line per file with its size, then totals."""
    out = out or sys.stdout
    width = max([len(e["file"]) for e in plan] + [4])
    print(f"{'file':<{width}}  obs  filter        bytes  action", file=out)
    for e in plan:
        obs = f"{e['obs']:03d}" if e["obs"] is not None else "?"
        size = e["size"] if e["size"] is not None else "?"
        action = "fetch" if e["status"] == "pending" else "skip"
        print(f"{e['file']:<{width}}  {obs:>3}  {e['filter']:<6}  {size:>11}  {action}", file=out)
    todo = [e for e in plan if e["status"] == "pending"]
    nbytes = sum(e["size"] or 0 for e in todo)
    print(f"would fetch {len(todo)} of {len(plan)} files ({human_size(nbytes)}); "
          f"{len(plan) - len(todo)} already complete", file=out)


def summarize(plan):
    """Counts of fetched, skipped and failed entries."""
    return {s: sum(e["status"] == s for e in plan) for s in ("fetched", "skipped", "failed")}


# --------------------------------------------------------------------------- the whole run

def download(pointing, *, download_dir=DEFAULT_DOWNLOAD_DIR, product_type="UNCAL", filters=FILTERS,
             cleanup=False, sort_files=False, dry_run=False, retries=3, delay=5.0,
             pointings=None, out=None):
    """Find, fetch and arrange the CEERS NIRCam products of a pointing.

    Parameters
    ----------
    pointing : str or int
        CEERS pointing number, or ``"all"`` for the whole program.
    download_dir : str
        Destination; files first land in ``mastDownload/JWST/<obs_id>/``.
    product_type : str
        ``UNCAL``, ``RATE``, ``CAL`` or ``I2D``.
    filters : sequence of str
        NIRCam filters to ask MAST for.
    cleanup : bool
        Move files from ``mastDownload`` into ``download_dir``.
    sort_files : bool
        Move files into ``nircamN``/``obsNNN`` by OBSERVTN (implies cleanup).
    dry_run : bool
        Only print what would be fetched (see :func:`print_plan`).
    retries, delay
        See :func:`with_retries`; used for queries and each file.
    pointings : astropy.table.Table, optional
        Pointing table; the packaged one by default.
    out : file, optional
        Where the dry-run listing goes; stdout by default.

    Returns
    -------
    dict
        Counts of fetched, skipped and failed files.

    Raises
    ------
    CeersError
        Bad input, a failed query, nothing found, or any file not fetched
        (after the manifest is written).
    """
    product_type = product_type.upper()
    if product_type not in PRODUCT_TYPES:
        raise CeersError(f"unknown product type {product_type!r}; choose one of {', '.join(PRODUCT_TYPES)}")
    if retries < 0 or delay < 0:
        raise CeersError("--retries and --retry-delay must not be negative")
    pointings = load_pointings() if pointings is None else pointings
    observations = observations_for(pointing, pointings)

    obs_table = query_observations(observations, filters, retries=retries, delay=delay)
    if not len(obs_table):
        raise CeersError(f"MAST lists no NIRCam images of program {PROPOSAL_ID} for pointing {pointing}")
    products = query_products(obs_table, retries=retries, delay=delay)
    selected = select_products(products, product_type, observations, obs_table)
    if not len(selected):
        raise CeersError(f"MAST lists no {product_type} science files for pointing {pointing}")
    plan = plan_downloads(selected, download_dir, pointings)
    log.info("%d %s files selected for pointing %s", len(plan), product_type, pointing)

    if dry_run:
        print_plan(plan, out)
        return summarize(plan)

    fetch_all(plan, retries=retries, delay=delay)
    moved = {}
    if sort_files:
        moved = sort_downloads(download_dir, pointings, product_type)
    elif cleanup:
        moved = cleanup_downloads(download_dir, product_type)
    for entry in plan:
        entry["path"] = moved.get(entry["path"], entry["path"])
    manifest = write_manifest(plan, download_dir)

    counts = summarize(plan)
    log.info("summary: %(fetched)d fetched, %(skipped)d skipped, %(failed)d failed", counts)
    if counts["failed"]:
        failed = [e["file"] for e in plan if e["status"] == "failed"]
        raise CeersError(f"{len(failed)} of {len(plan)} files failed ({', '.join(failed[:3])}"
                         f"{', ...' if len(failed) > 3 else ''}); see {manifest} and run again to resume")
    return counts
