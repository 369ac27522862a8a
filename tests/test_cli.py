"""Options derived once from a parameter dataclass, and the one-line error convention."""

import dataclasses
import os
import signal
import subprocess
import sys

import pytest

from ceers_nircam.cli import (CeersError, add_options, make_parser, option, option_tokens,
                              params_from_args, run)


@dataclasses.dataclass(frozen=True)
class Params:
    thresh: float = option(0.8, "masked fraction above which the full row is used")
    scale: float | None = option(None, "fixed scale")
    save_patterns: bool = option(False, "write the patterns")
    flat: bool = option(True, "flat-field before measuring")
    radii: tuple = option((7, 15), "radii", nargs=2, type=int)
    cores: str = option("none", "cores", choices=("none", "quarter", "half", "all"))


def _parse(argv):
    return params_from_args(Params, add_options(make_parser("t"), Params).parse_args(argv))


def test_defaults_come_from_the_dataclass():
    assert _parse([]) == Params()


@pytest.mark.parametrize("argv, field, value", [
    (["--thresh", "0.15"], "thresh", 0.15),
    (["--scale", "0.57"], "scale", 0.57),
    (["--save_patterns"], "save_patterns", True),
    (["--no_flat"], "flat", False),
    (["--radii", "5", "9"], "radii", (5, 9)),
    (["--cores", "half"], "cores", "half"),
])
def test_each_option_sets_its_field(argv, field, value):
    assert getattr(_parse(argv), field) == value


def test_bad_choice_is_rejected():
    with pytest.raises(SystemExit):
        _parse(["--cores", "most"])


def test_tokens_round_trip_non_default_values():
    params = Params(thresh=0.15, save_patterns=True, flat=False, cores="all")
    tokens = option_tokens(params)
    assert tokens == ["--thresh", "0.15", "--save_patterns", "--no_flat", "--cores", "all"]
    assert _parse(tokens) == params
    assert option_tokens(Params()) == []


def test_run_turns_errors_into_one_line_and_exit_code(capsys):
    def fail(argv):
        raise CeersError("x.fits: no such file")
    assert run(fail, []) == 1
    assert capsys.readouterr().err == "ERROR: x.fits: no such file\n"
    assert run(lambda argv: None, []) == 0
    assert run(lambda argv: 3, []) == 3


WRITER = """
import sys, time
from ceers_nircam import cli
from ceers_nircam.fitsio import atomic_path

def main(argv):
    with atomic_path(sys.argv[1]) as tmp, open(tmp, "w") as fh:
        fh.write("half")
        fh.flush()
        print("writing", flush=True)
        time.sleep(60)
sys.exit(cli.run(main))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_while_writing_leaves_no_file(tmp_path, sig):
    # SIGINT ignored at the start, as a script's background job inherits it: Ctrl-C must
    # still stop the command cleanly.
    target = tmp_path / "out.fits"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.stdout.readline().strip() == "writing"
    assert len(os.listdir(tmp_path)) == 1  # the temporary file, being written
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err.strip() == "ERROR: interrupted"
    assert os.listdir(tmp_path) == []
