"""Options derived once from a parameter dataclass, and the one-line error convention."""

import dataclasses

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
