"""What a step did to a file, and whether it already did it.

Every step that changes pixels records one history entry,
``ceers-nircam <step>: key=value, ...``, in the datamodel (stored by
stdatamodels in the ASDF tree and as FITS HISTORY cards). The same entry is
the rerun guard: a step that finds its own entry does nothing, so running a
batch file twice never subtracts anything twice.
"""

import os
import warnings

from astropy.io import fits

from . import __version__

PREFIX = "ceers-nircam"
SOFTWARE = {"name": "ceers-nircam", "author": "ceers-nircam developers",
            "homepage": "https://github.com/ceers/ceers-nircam", "version": __version__}


def _tag(step):
    return f"{PREFIX} {step}:"


# FITS stores a long entry as HISTORY cards of CARD_TEXT characters each, and
# stdatamodels reads every card back as an entry of its own. A card whose
# text would end in a space loses it (FITS drops trailing blanks): one card
# short by a character is continued after a space.
CARD_TEXT = 72


def describe(step, params=None):
    """The text of a history entry: step name and its parameters."""
    params = params or {}
    values = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"{_tag(step)} {values}".rstrip()


def record(model, step, params=None):
    """Append the history entry of ``step`` (with its parameters) to a datamodel."""
    text = describe(step, params)
    while len(text) % CARD_TEXT in (0, CARD_TEXT - 1):  # such a last card would read as continued
        text += "."
    model.add_history_entry(text, software=SOFTWARE)


def _joined(descriptions):
    """Entries with the FITS continuation cards of our long entries joined back."""
    out, last = [], 0
    for text in descriptions:
        if out and out[-1].startswith(PREFIX) and last == CARD_TEXT:
            out[-1] += text
        elif out and out[-1].startswith(PREFIX) and last == CARD_TEXT - 1:
            out[-1] += " " + text
        else:
            out.append(text)
        last = len(text)
    return out


def _descriptions(source):
    if isinstance(source, (str, os.PathLike)):
        # The FITS HISTORY cards carry the entries: no need to open the datamodel.
        header = fits.getheader(source, 0)
        return _joined([str(card) for card in header.get("HISTORY", [])])
    # model.history is the only reader stdatamodels offers; its warning is about writing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        history = source.history or []
    return _joined([str(entry.get("description", "")) for entry in history])


def entries(source, step):
    """History entries of ``step`` in a datamodel or a FITS file."""
    return [d for d in _descriptions(source) if d.startswith(_tag(step))]


def already_done(source, step):
    """True if ``step`` has recorded itself in the datamodel or FITS file."""
    return bool(entries(source, step))
