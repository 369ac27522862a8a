"""Command-line plumbing shared by every step script.

Every script builds its parser with :func:`make_parser`, wraps its work in
:func:`run` and raises :class:`CeersError` for anything the user must fix.
``run`` turns that into a single ``ERROR: ...`` line on stderr and a non-zero
exit, so batch launchers and users see one clear message per failed task.
"""

import argparse
import contextlib
import logging
import sys

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


class CeersError(Exception):
    """An error the user can act on: bad input, missing file, unknown name."""


def setup_logging(verbose=False):
    """Log to stderr in the stpipe style (time - logger - level - message)."""
    root = logging.getLogger()
    level = logging.DEBUG if verbose else logging.INFO
    if not any(getattr(h, "_ceers", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._ceers = True
        root.addHandler(handler)
    root.setLevel(level)


def get_logger(name):
    """Logger for a step or module, named ``ceers.<name>``."""
    return logging.getLogger(f"ceers.{name}")


@contextlib.contextmanager
def quiet_loggers(*names, level=logging.WARNING):
    """Raise the level of the named loggers for the duration of a block."""
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, saved):
            lg.setLevel(lvl)


def make_parser(description, prog=None):
    """An argument parser carrying the options every script shares."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run(main, argv=None):
    """Run ``main(args)`` and convert failures into a one-line error and exit code.

    ``main`` receives the raw argv list (or ``None`` for ``sys.argv[1:]``) and
    returns an exit status (``None`` means 0).
    """
    try:
        status = main(argv)
    except CeersError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ERROR: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


def progress(iterable, log, what, total=None, every=None):
    """Yield from ``iterable`` while logging ``what i/n`` at regular steps."""
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    if every is None:
        every = max(1, (total or 10) // 10)
    for i, item in enumerate(iterable, 1):
        yield item
        if i % every == 0 or i == total:
            log.info("%s %d/%s", what, i, total if total is not None else "?")
