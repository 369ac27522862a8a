"""Command-line plumbing shared by every step script.

Every script builds its parser with :func:`make_parser`, wraps its work in
:func:`run` and raises :class:`CeersError` for anything the user must fix.
``run`` turns that into a single ``ERROR: ...`` line on stderr and a non-zero
exit, so batch launchers and users see one clear message per failed task.
"""

import argparse
import contextlib
import dataclasses
import logging
import sys
import typing

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


class CeersError(Exception):
    """An error the user can act on: bad input, missing file, unknown name."""


class _CurrentStderr(logging.StreamHandler):
    """A stream handler writing to whatever ``sys.stderr`` is when a record comes
    (a script run in-process, as in tests, may find it replaced)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(verbose=False):
    """Log to stderr in the stpipe style (time - logger - level - message)."""
    root = logging.getLogger()
    level = logging.DEBUG if verbose else logging.INFO
    if not any(getattr(h, "_ceers", False) for h in root.handlers):
        handler = _CurrentStderr()
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


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop_on_signals():
    """Make SIGTERM (a batch runner or SLURM stopping the command) unwind like Ctrl-C, so that
    files being written are removed rather than left half-written; and make Ctrl-C (SIGINT)
    do so even when the command was started with it ignored (a background job of a script)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run(main, argv=None):
    """Run ``main(args)`` and convert failures into a one-line error and exit code.

    ``main`` receives the raw argv list (or ``None`` for ``sys.argv[1:]``) and
    returns an exit status (``None`` means 0).
    """
    _stop_on_signals()
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


# --------------------------------------------------------------------------
# parameters written once: a dataclass whose fields carry their help text


def option(default, help, *, flag=None, choices=None, nargs=None, type=None):
    """A dataclass field that is also a command-line option.

    ``flag`` overrides the option name (default ``--<field_name>``); a bool
    field with default False becomes a switch, one with default True a
    ``--no_<name>`` switch. ``type`` converts each value (default: from the
    field's annotation).
    """
    meta = {"help": help, "flag": flag, "choices": choices, "nargs": nargs, "type": type}
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable")
    return dataclasses.field(default=default, metadata=meta)


def _flag(field):
    if field.metadata.get("flag"):
        return field.metadata["flag"]
    name = field.name
    if field.type in (bool, "bool") and field.default is True:
        return f"--no_{name}"
    return f"--{name}"


def _scalar_type(annotation):
    """int, float or str from a field annotation (``float | None`` gives float)."""
    if isinstance(annotation, str):
        annotation = annotation.split("|")[0].strip()
        return {"int": int, "float": float}.get(annotation, str)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    annotation = args[0] if args else annotation
    return annotation if annotation in (int, float) else str


def add_options(parser, params_class):
    """Add one option per field of the dataclass ``params_class`` to ``parser``."""
    for field in dataclasses.fields(params_class):
        if "help" not in field.metadata:
            continue
        flag, meta = _flag(field), field.metadata
        if field.type in (bool, "bool"):
            action = "store_false" if field.default is True else "store_true"
            text = meta["help"]
            if field.default is True and not meta.get("flag"):  # --no_<name> turns a default off
                text = f"turn off (on by default): {text}"
            parser.add_argument(flag, dest=field.name, action=action, help=text)
            continue
        kwargs = {"dest": field.name, "default": field.default, "help": meta["help"]}
        kwargs["type"] = meta.get("type") or _scalar_type(field.type)
        for key in ("choices", "nargs"):
            if meta.get(key) is not None:
                kwargs[key] = meta[key]
        parser.add_argument(flag, **kwargs)
    return parser


def params_from_args(params_class, args):
    """An instance of ``params_class`` from parsed options."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(params_class)
              if hasattr(args, f.name)}
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return params_class(**values)


def option_tokens(params):
    """Command-line tokens that reproduce ``params`` (only values differing from the defaults)."""
    tokens = []
    for field in dataclasses.fields(params):
        if "help" not in field.metadata:
            continue
        value = getattr(params, field.name)
        if value == field.default:
            continue
        flag = _flag(field)
        if isinstance(value, bool):
            tokens.append(flag)
        elif isinstance(value, (tuple, list)):
            tokens += [flag, *(str(v) for v in value)]
        else:
            tokens += [flag, str(value)]
    return tokens
