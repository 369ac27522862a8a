"""Test session setup: the offline CRDS context and a guard against network use.

The synthetic reference cache is built once into ``.offline/`` at the
repository root (or ``$CEERS_OFFLINE_DIR``) and reused while current. The CRDS
environment is set here, before any test imports crds or jwst, exactly as a
user's ``ceers_env.sh`` would set it.
"""

import ipaddress
import os
import socket

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFLINE_DIR = os.path.abspath(os.environ.get("CEERS_OFFLINE_DIR", os.path.join(ROOT, ".offline")))

from ceers_nircam.offline.cli import environment  # noqa: E402

os.environ.update(environment(OFFLINE_DIR))


@pytest.fixture(scope="session")
def offline_env():
    """Build (or reuse) the synthetic CRDS cache and wisp templates; return the env dict."""
    from ceers_nircam.offline.cli import build

    build(OFFLINE_DIR, demo=False)
    return environment(OFFLINE_DIR)


@pytest.fixture(scope="session")
def offline_dir(offline_env):
    """Directory of the built offline environment (holds ceers_env.sh)."""
    return OFFLINE_DIR


_real_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if self.family in (socket.AF_INET, socket.AF_INET6):
        try:
            loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except (OSError, ValueError):
            loopback = False
        if not loopback:
            raise OSError(f"network access to {host} attempted during tests")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any connection outside loopback: the suite must run offline."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Free the disk of shared fixtures whose last test has run (see scratch.py)."""
    import scratch

    scratch.release(item)
