"""Test session setup: the offline CRDS context and a guard against network use.

The synthetic reference cache is built once into ``.offline/`` at the
repository root (or ``$CEERS_OFFLINE_DIR``) and reused while current. The CRDS
environment is set here, before any test imports crds or jwst, exactly as a
user's ``ceers_env.sh`` would set it.
"""

import fcntl
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

    os.makedirs(OFFLINE_DIR, exist_ok=True)
    # Test workers (run_tests.sh runs two) start at once: one builds, the other then finds it current.
    with open(os.path.join(OFFLINE_DIR, ".build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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


# The parts of the suite that take longest, started first so that the test workers finish together.
LONGEST_FIRST = ("stage3", "test_demo.py", "stage1", "offline", "batch")


# Test files in the folder of a long part that use none of its fixtures: parts of their own,
# which the other test worker can take (the DR0.5 inputs are read from ../shared, ~3 minutes).
OWN_PARTS = ("stage3/test_dr05_inputs.py",)


def suite_part(path):
    """The folder of tests a test file is in (``stage3``), or the file itself for a top-level one
    or one of OWN_PARTS; ``path`` absolute or relative to the repository root."""
    relative = os.path.relpath(os.path.join(ROOT, path), os.path.join(ROOT, "tests"))
    if relative.replace(os.sep, "/") in OWN_PARTS:
        return relative
    return relative.split(os.sep)[0]


def pytest_collection_modifyitems(config, items):
    """The longest parts of the suite first (the order in which the test workers take them up)."""
    rank = {part: i for i, part in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(suite_part(str(item.path)), len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Test workers (pytest-xdist, ``run_tests.sh`` runs two) take whole parts of the suite, each
    part on one worker, since a part's session fixtures (a simulated pointing, the demo) would
    otherwise be made again on every worker that runs one of its tests."""
    if config.getvalue("dist") == "each":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class BySuitePart(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return suite_part(nodeid.split("::")[0])

    return BySuitePart(config, log)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Free the disk of shared fixtures whose last test has run (see scratch.py)."""
    import scratch

    scratch.release(item)
