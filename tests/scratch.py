"""Working folders of session fixtures, freed once the last test that can use them has run.

The shared simulated pointings write gigabytes (the stage-3 pointing about 12 GB, the stage-1
frames about 1.5 GB). Kept until the end of the session they add up with the demo's
10 GB at the very moment the demo needs room; so each folder is removed as soon as no test of
the folder of tests that owns the fixture is left to run.
"""

import os
import shutil

_OWNED = {}  # folder of tests -> working folders its session fixtures made


def shared_dir(tmp_path_factory, name, owner):
    """``tmp_path_factory.mktemp(name)``, removed after the last test under ``owner``'s folder."""
    path = tmp_path_factory.mktemp(name)
    _OWNED.setdefault(os.path.dirname(os.path.abspath(owner)), []).append(path)
    return path


def release(item):
    """Remove the folders of every owner that has no test after ``item`` (a teardown hook's job)."""
    if not _OWNED:
        return
    items = item.session.items
    later = items[items.index(item) + 1:] if item in items else []
    for folder in list(_OWNED):
        if not any(str(test.path).startswith(folder + os.sep) for test in later):
            for path in _OWNED.pop(folder):
                shutil.rmtree(path, ignore_errors=True)
