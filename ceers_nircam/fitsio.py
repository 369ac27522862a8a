"""FITS and datamodel input/output shared by every step.

Outputs are written to a temporary name beside the target and renamed when
complete, so an interrupted run never leaves a half-written file under the
real name. Inputs are opened with a check that they exist, are readable FITS
and carry the extensions a step needs, giving a one-line :class:`CeersError`
otherwise.
"""

import contextlib
import os
import shutil
import tempfile
import warnings

from astropy.io import fits

from .cli import CeersError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    # Keep the real extension last so writers that sniff it (datamodels) work.
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".part{os.path.splitext(base)[1]}",
                               dir=directory)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_hdulist(hdulist, path):
    """Write an HDUList atomically; return ``path``."""
    with atomic_path(path) as tmp:
        hdulist.writeto(tmp)
    return path


def write_images(path, images, headers=None):
    """Write named image extensions (``{name: array}``, in order) to a FITS file atomically.

    ``headers`` optionally maps an extension name to its header cards.
    """
    headers = headers or {}
    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(data, headers.get(name), name=name)
                                  for name, data in images.items()]
    return write_hdulist(fits.HDUList(hdus), path)


def save_model(model, path):
    """Save a jwst datamodel atomically under ``path``.

    The model is written under its real base name inside a temporary
    directory beside ``path`` (a datamodel records the name it is saved
    under in meta.filename), then renamed into place.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    tmpdir = tempfile.mkdtemp(prefix=f".{base}.", suffix=".part", dir=directory)
    try:
        tmp = os.path.join(tmpdir, base)
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path


def copy_aside(path, suffix_from, suffix_to):
    """Copy ``...suffix_from`` to ``...suffix_to`` once (an original kept before editing).

    Returns the path of the copy. An existing copy is never overwritten: it is
    the untouched original from the first run.
    """
    path = os.fspath(path)
    if not path.endswith(suffix_from):
        raise CeersError(f"{path}: expected a file ending in {suffix_from}")
    dest = path[: -len(suffix_from)] + suffix_to
    if not os.path.exists(dest):
        with atomic_path(dest) as tmp:
            shutil.copy2(path, tmp)
    return dest


def check_fits(path, extensions=()):
    """Check that ``path`` is a readable FITS file holding the named extensions.

    Returns the primary header. Raises :class:`CeersError` with a one-line
    reason otherwise.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CeersError(f"{path}: no such file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path) as hdul:
                header = hdul[0].header.copy()
                names = {h.name.upper() for h in hdul}
                for hdu in hdul:  # reading every extension's data brings truncation to light
                    hdu.data  # noqa: B018
    except (OSError, ValueError, TypeError, IndexError) as err:
        reason = "truncated" if "buffer is too small" in str(err) else err
        raise CeersError(f"{path}: not a readable FITS file ({reason})") from None
    # A truncated file lacks its last extensions too: report the truncation first.
    for warning in caught:
        if "truncated" in str(warning.message):
            raise CeersError(f"{path}: not a readable FITS file (truncated)")
    for ext in extensions:
        if ext.upper() not in names:
            raise CeersError(f"{path}: missing {ext.upper()} extension")
    return header


def require_nircam(header, path):
    """Raise unless the primary header says NIRCam."""
    instrument = str(header.get("INSTRUME", "")).strip().upper()
    if instrument != "NIRCAM":
        raise CeersError(f"{path}: instrument is {instrument or 'unknown'}, expected NIRCAM")
