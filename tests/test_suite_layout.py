"""The test suite itself: pytest imports test modules by their file name (the folders have no
__init__.py), so two modules of the same name would stop collection."""

import collections
import os

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_test_modules_have_distinct_names():
    names = collections.Counter(name for _, _, files in os.walk(TESTS) for name in files
                                if name.startswith("test_") and name.endswith(".py"))
    assert names["test_suite_layout.py"] == 1
    assert [name for name, count in names.items() if count > 1] == []
