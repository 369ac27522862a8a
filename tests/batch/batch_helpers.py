"""Shared bits of the batch tests (importable because pytest puts this folder on sys.path)."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def require(reason):
    """Skip on a developer's machine that lacks a prerequisite; fail in CI, which must have it."""
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide this: {reason}")
        pytest.skip(reason)
