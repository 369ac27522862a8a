"""Shared bits of the batch tests (importable because pytest puts this folder on sys.path)."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _shared_data():
    """``../shared/data/ceers-dr05`` beside the repository (CI), or beside a folder above it
    (a git worktree under ``wt/``)."""
    folder = os.path.dirname(ROOT)
    while True:
        candidate = os.path.join(folder, "shared", "data", "ceers-dr05")
        if os.path.isdir(candidate) or os.path.dirname(folder) == folder:
            return candidate if os.path.isdir(candidate) else os.path.join(
                os.path.dirname(ROOT), "shared", "data", "ceers-dr05")
        folder = os.path.dirname(folder)


SHARED_DATA = _shared_data()


def require(reason):
    """Skip on a developer's machine that lacks a prerequisite; fail in CI, which must have it."""
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide this: {reason}")
        pytest.skip(reason)
