"""Where the public CEERS DR0.5 files are, for the tests that compare with them.

They lie in ``../shared/data/ceers-dr05`` beside the project (or beside a
folder further up, for a git worktree kept in a subfolder) and are read in
place, never copied. The project does not need them: a test that reads them
is marked :data:`needed` and skips where they are absent. The issues ask for
these comparisons only "when ../shared/data is present".
"""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("shared", "data", "ceers-dr05")


def _find():
    folder = os.path.dirname(ROOT)
    while True:
        candidate = os.path.join(folder, *PARTS)
        if os.path.isdir(candidate):
            return candidate
        if os.path.dirname(folder) == folder:
            return os.path.join(os.path.dirname(ROOT), *PARTS)
        folder = os.path.dirname(folder)


DR05 = _find()
PRESENT = os.path.isdir(DR05)
needed = pytest.mark.skipif(not PRESENT, reason=f"{DR05}: the public CEERS DR0.5 files are not "
                                                "here (the project does not need them)")


def path(*parts):
    """A file or folder of the DR0.5 data."""
    return os.path.join(DR05, *parts)
