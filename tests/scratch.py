"""Working folders of session fixtures, freed once the last test that can use them has run.

The shared simulated pointings write gigabytes (the stage-3 pointing about 12 GB, the stage-1
frames about 1.5 GB, the demo about 10 GB). Kept until the end of the session they would add
up, and the test workers run these parts side by side; so each folder is removed as soon as no
test that can use it is left to run.
"""

import os
import shutil

_OWNED = {}  # folder or file of tests -> working folders its session fixtures made


def shared_dir(tmp_path_factory, name, owner):
    """``tmp_path_factory.mktemp(name)``, removed after the last test that ``owner`` covers: the
    tests of its folder for a ``conftest.py``, those of the file itself for a test file."""
    path = tmp_path_factory.mktemp(name)
    owner = os.path.abspath(owner)
    if os.path.basename(owner) == "conftest.py":
        owner = os.path.dirname(owner)
    _OWNED.setdefault(owner, []).append(path)
    return path


def release(item):
    """Remove the folders of every owner that has no test after ``item`` (a teardown hook's job)."""
    if not _OWNED:
        return
    items = item.session.items
    later = items[items.index(item) + 1:] if item in items else []
    for owner in list(_OWNED):
        if not any(str(test.path) == owner or str(test.path).startswith(owner + os.sep)
                   for test in later):
            for path in _OWNED.pop(owner):
                shutil.rmtree(path, ignore_errors=True)
