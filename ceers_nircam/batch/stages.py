"""The stages of the reduction as run files: one line per image, association or pointing.

:func:`generate` writes, for one pointing or ``all``, a run file per stage in
execution order, each line a call of the project's stage scripts::

    detector1_and_snowballs  stage1/snowball_wrapper.py  one line per exposure
    wisp_subtraction         stage1/wispsub.py           NRCA3/A4/B3/B4 in F150W/F200W
    remstriping              stage1/remstriping.py       one line per exposure
    image2                   stage2/image2.py            one line per exposure
    update_wcs               stage3/updatewcs.py         one line per exposure, or instead
    astrometry               stage3/astrometry.py        one line per visit and filter
    associations             stage3/associations.py      one line per pointing
    image3_part1             stage3/image3_part1.py      one line per association
    skysub_varscale          stage3/skywcsvar.py         one line per exposure
    make_mosaics             stage3/make_mosaic.py       one line per association
    mosaic_background        stage3/mosaic_background.py one line per pointing

Each line's sidecar entry names its outputs (and, for the in-place steps, the
history entry they must carry), so that a run can be resumed.
:func:`parse_command` reads a line back, ours or one of the CEERS DR0.5
originals, as (step, target, parameters).
"""

import dataclasses
import os
import re
import shlex

from .. import download, names
from ..cli import CeersError, get_logger, option
from ..nircam import WISP_DETECTORS, WISP_FILTERS
from ..survey import FILTERS
from . import exposures as ex
from .runfile import Line, check_command, write_order, write_run_file

log = get_logger("batch.stages")

STAGES = ("detector1_and_snowballs", "wisp_subtraction", "remstriping", "image2", "update_wcs",
          "astrometry", "associations", "image3_part1", "skysub_varscale", "make_mosaics",
          "mosaic_background")
ALIGNMENT = ("update_wcs", "astrometry")  # one or the other
SCRIPTS = {
    "detector1_and_snowballs": "stage1/snowball_wrapper.py",
    "wisp_subtraction": "stage1/wispsub.py",
    "remstriping": "stage1/remstriping.py",
    "image2": "stage2/image2.py",
    "update_wcs": "stage3/updatewcs.py",
    "astrometry": "stage3/astrometry.py",
    "associations": "stage3/associations.py",
    "image3_part1": "stage3/image3_part1.py",
    "skysub_varscale": "stage3/skywcsvar.py",
    "make_mosaics": "stage3/make_mosaic.py",
    "mosaic_background": "stage3/mosaic_background.py",
}
# The stage scripts' own defaults: options equal to these are left out of the lines.
SCRIPT_DEFAULTS = {"input_dir": "uncals", "output_dir": "calibrated", "mosaic_dir": "mosaics",
                   "asn_dir": ".", "cores": "none", "thresh": 0.8}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """Options of the generator. Directories in the lines are relative to ``workdir``."""

    uncal_dir: str = option("uncals", "folder of the *_uncal.fits files, searched recursively")
    exposures: str | None = option(None, "list of exposures to use instead of the files present: one "
                                         "name a line, or a CSV with 'exposure' (and 'filter') columns")
    table: str | None = option(None, "CSV of per-image values: exposure, filter, wisp_scale, thresh")
    batch_dir: str = option("batch", "where the run files go, in a folder per pointing")
    workdir: str = option(".", "directory the lines run in")
    calibrated_dir: str = option("calibrated", "folder of the rate, cal and stage-3 exposure files")
    asn_dir: str = option(".", "folder of the association files")
    mosaic_dir: str = option("mosaics", "folder of the mosaics")
    scripts_dir: str | None = option(None, "folder holding stage1/, stage2/, stage3/ "
                                           "(default: this repository)")
    python: str = option("python", "interpreter named in the lines")
    cores: str = option("none", "cores for ramp fitting in Detector1",
                        choices=("none", "quarter", "half", "all"))
    delete_interim: bool = option(False, "delete Detector1's interim files")
    wisp_template_dir: str | None = option(None, "folder of the wisp templates (the wisp step's "
                                                 "default when not given)")
    save_patterns: bool = option(True, "save the 1/f row and column patterns, as DR0.5 did")
    alignment: str = option("update_wcs", "apply saved TweakReg WCS (update_wcs) or fit the "
                                          "alignment (astrometry)", choices=ALIGNMENT)
    wcs_dir: str | None = option(None, "folder of saved *_tweakreg.asdf WCS (update_wcs)")
    astrometry_config: str = option("tweakreg_cfgs/{pointing}/{filter}.cfg",
                                    "astrometry config per pointing and filter ({pointing}: "
                                    "nircamN, {filter}: f150w)")
    refcat: str | None = option(None, "absolute astrometric reference catalog (astrometry)")
    save_results: bool = option(False, "astrometry writes its results table")
    background_config: str | None = option(None, "mosaic background config file")
    stages: tuple = option((), "write only these stages (default: every stage)", nargs="*",
                           choices=STAGES)
    extra: tuple = option((), "more options for every line of a stage, as STAGE='OPTIONS' "
                              "(e.g. wisp_subtraction='--plot')", nargs="*")

    def extra_options(self):
        """{stage: [tokens]} from ``extra``; an unknown stage is a one-line error."""
        out = {}
        for item in self.extra:
            stage, _, options = item.partition("=")
            if stage not in STAGES or not options.strip():
                raise CeersError(f"--extra {item!r}: expected STAGE='OPTIONS' with a stage of "
                                 f"{', '.join(STAGES)}")
            out.setdefault(stage, []).extend(shlex.split(options))
        return out


# --------------------------------------------------------------------------- helpers

def _join(directory, name):
    return name if directory in (None, "", ".") else os.path.join(directory, name)


def _number(value):
    return repr(float(value))


def _opt(flag, value, default=None):
    """[flag, value] unless the value is None or the stage script's default."""
    return [] if value is None or value == default else [flag, str(value)]


def _switch(flag, on):
    return [flag] if on else []


def scripts_prefix(settings):
    """Folder of the stage scripts as written in the lines (relative when inside the workdir)."""
    folder = os.path.abspath(settings.scripts_dir or REPO_ROOT)
    rel = os.path.relpath(folder, os.path.abspath(settings.workdir))
    return folder if rel.startswith("..") else ("" if rel == "." else rel)


def _command(settings, stage, args):
    script = _join(scripts_prefix(settings), SCRIPTS[stage])
    return shlex.join([settings.python, script, *args])


def pointing_name(group):
    """``nircam2b`` -> ``nircam2``: the pointing (and mosaic grid) of a group."""
    return re.match(r"nircam\d+", group).group(0)


def resolve_pointing(text, pointings):
    """(label, observations) of ``1``, ``nircam1`` or ``all`` (observations None for all)."""
    value = str(text).strip().lower()
    value = value[len("nircam"):] if value.startswith("nircam") else value
    observations = download.observations_for(value, pointings)
    return ("all", None) if observations is None else (f"nircam{value}", set(observations))


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the lines are built from: exposures, their groups and per-image values."""

    exposures: tuple
    groups: dict      # exposure root -> group (nircam1, nircam2b)
    values: dict      # exposure root -> ImageValues
    settings: BatchSettings

    def by_group_filter(self):
        """{(group, filter): [Exposure]} in group then CEERS filter order."""
        out = {}
        for exp in self.exposures:
            out.setdefault((self.groups[exp.root], exp.filter), []).append(exp)
        return dict(sorted(out.items(), key=lambda kv: (kv[0][0], FILTERS.index(kv[0][1]))))

    def pointing_names(self):
        return sorted({pointing_name(g) for g in self.groups.values()})


# --------------------------------------------------------------------------- line builders

def detector1_lines(plan):
    s, cal = plan.settings, plan.settings.calibrated_dir
    return [Line(_command(s, "detector1_and_snowballs",
                          [f"{e.root}_uncal.fits", *_opt("--input_dir", e.uncal_dir, "uncals"),
                           *_opt("--output_dir", cal, "calibrated"), *_opt("--cores", s.cores, "none"),
                           *_switch("--delete_interim", s.delete_interim)]),
                 key=e.root, outputs=(names.product(e.root, "rate", cal),))
            for e in plan.exposures]


def has_wisps(exposure):
    """True for the detectors and filters the wisp step corrects."""
    return exposure.parts["detector"] in WISP_DETECTORS and exposure.filter in WISP_FILTERS


def wisp_lines(plan):
    s, lines = plan.settings, []
    for e in plan.exposures:
        scale = plan.values.get(e.root, ex.ImageValues()).wisp_scale
        if not has_wisps(e):
            if scale is not None:
                log.warning("%s (%s): wisp scale in the table ignored, no wisps here", e.root, e.filter)
            continue
        rate = names.product(e.root, "rate", s.calibrated_dir)
        mode = ["--fit"] if scale is None else ["--scale", _number(scale)]
        lines.append(Line(_command(s, "wisp_subtraction",
                                   [rate, *mode, *_opt("--template_dir", s.wisp_template_dir)]),
                          key=e.root, outputs=(rate,), history="wispsub"))
    return lines


def remstriping_lines(plan):
    s, lines = plan.settings, []
    for e in plan.exposures:
        thresh = plan.values.get(e.root, ex.ImageValues()).thresh
        rate = names.product(e.root, "rate", s.calibrated_dir)
        args = [rate, "--thresh", _number(SCRIPT_DEFAULTS["thresh"] if thresh is None else thresh),
                *_switch("--save_patterns", s.save_patterns)]
        lines.append(Line(_command(s, "remstriping", args), key=e.root, outputs=(rate,),
                          history="remstriping"))
    return lines


def image2_lines(plan):
    s, cal = plan.settings, plan.settings.calibrated_dir
    return [Line(_command(s, "image2", [names.product(e.root, "rate", cal),
                                        *_opt("--output_dir", cal, "calibrated")]),
                 key=e.root, outputs=(names.product(e.root, "cal", cal),))
            for e in plan.exposures]


def update_wcs_lines(plan):
    s, cal = plan.settings, plan.settings.calibrated_dir
    return [Line(_command(s, "update_wcs", ["--image", names.product(e.root, "cal", cal),
                                            *_opt("--wcs_dir", s.wcs_dir)]),
                 key=e.root, outputs=(names.product(e.root, "tweakreg", cal),))
            for e in plan.exposures]


def astrometry_lines(plan):
    s, cal = plan.settings, plan.settings.calibrated_dir
    if not s.refcat:
        raise CeersError("--alignment astrometry needs --refcat CATALOG")
    visits = {}
    for e in plan.exposures:
        visits.setdefault((e.parts["visit_id"], e.filter), []).append(e)
    lines = []
    for (visit, filt), members in sorted(visits.items()):
        config = s.astrometry_config.format(pointing=pointing_name(plan.groups[members[0].root]),
                                            filter=filt.lower())
        args = ["--visit", visit, "--filter", filt, "--config", config, "--refcat", s.refcat,
                *_switch("--save_results", s.save_results),
                *(names.product(e.root, "cal", cal) for e in members)]
        lines.append(Line(_command(s, "astrometry", args), key=f"{visit}_{filt.lower()}",
                          outputs=tuple(names.product(e.root, "tweakreg", cal) for e in members)))
    return lines


def associations_lines(plan):
    s, lines = plan.settings, []
    combos = plan.by_group_filter()
    for pointing in plan.pointing_names():
        outputs = tuple(names.association(g, f, final, s.asn_dir)
                        for (g, f) in combos if pointing_name(g) == pointing for final in (False, True))
        args = ["--pointing", pointing, *_opt("--input_dir", s.calibrated_dir, "calibrated"),
                *_opt("--output_dir", s.asn_dir, ".")]
        lines.append(Line(_command(s, "associations", args), key=pointing, outputs=outputs))
    return lines


def image3_part1_lines(plan):
    s, cal = plan.settings, plan.settings.calibrated_dir
    return [Line(_command(s, "image3_part1", [names.association(g, f, False, s.asn_dir),
                                              *_opt("--output_dir", cal, "calibrated")]),
                 key=f"{g}_{f.lower()}",
                 outputs=tuple(names.product(e.root, "a3001_crf", cal) for e in members))
            for (g, f), members in plan.by_group_filter().items()]


def skysub_lines(plan):
    s, cal = plan.settings, plan.settings.calibrated_dir
    return [Line(_command(s, "skysub_varscale", ["--image", names.product(e.root, "a3001_crf", cal)]),
                 key=e.root, outputs=(names.product(e.root, "a3001_match", cal),))
            for e in plan.exposures]


def mosaic_lines(plan):
    s = plan.settings
    return [Line(_command(s, "make_mosaics", [names.association(g, f, True, s.asn_dir),
                                              "--grid", pointing_name(g),
                                              *_opt("--output_dir", s.mosaic_dir, "mosaics")]),
                 key=f"{g}_{f.lower()}", outputs=(names.mosaic(g, f, "i2d", s.mosaic_dir),))
            for (g, f) in plan.by_group_filter()]


def mosaic_background_lines(plan):
    s, lines = plan.settings, []
    combos = [gf for gf in plan.by_group_filter()]
    for pointing in plan.pointing_names():
        mine = [(g, f) for g, f in combos if pointing_name(g) == pointing]
        args = ["--pointing", pointing, *_opt("--config", s.background_config),
                *(names.mosaic(g, f, "i2d", s.mosaic_dir) for g, f in mine)]
        lines.append(Line(_command(s, "mosaic_background", args), key=pointing,
                          outputs=tuple(names.mosaic(g, f, "mbkgsub1", s.mosaic_dir) for g, f in mine)))
    return lines


BUILDERS = {
    "detector1_and_snowballs": detector1_lines, "wisp_subtraction": wisp_lines,
    "remstriping": remstriping_lines, "image2": image2_lines, "update_wcs": update_wcs_lines,
    "astrometry": astrometry_lines, "associations": associations_lines,
    "image3_part1": image3_part1_lines, "skysub_varscale": skysub_lines,
    "make_mosaics": mosaic_lines, "mosaic_background": mosaic_background_lines,
}


# --------------------------------------------------------------------------- generation

def stage_order(settings):
    """The stages to write, in execution order (one of update_wcs / astrometry)."""
    skip = set(ALIGNMENT) - {settings.alignment}
    chosen = set(settings.stages) or set(STAGES)
    return [s for s in STAGES if s not in skip and s in chosen]


def make_plan(pointing, settings, pointings=None):
    """Gather the exposures of a pointing (files present or a list) with groups and values.

    Returns
    -------
    (str, Plan)
        The label (``nircam1`` or ``all``) and the plan.
    """
    pointings = download.load_pointings() if pointings is None else pointings
    label, observations = resolve_pointing(pointing, pointings)
    values = ex.read_values_table(settings.table) if settings.table else {}
    if settings.exposures:
        found = ex.read_exposure_list(settings.exposures, settings.uncal_dir)
    else:
        found = ex.find_uncals(settings.uncal_dir, settings.workdir)
    chosen, groups = [], {}
    for exp in found:
        obs = exp.parts["observation"]
        group = download.pointing_group(obs, pointings)
        if group is None:
            log.warning("Left out %s: observation %d is not a known CEERS pointing", exp.root, obs)
        elif observations is None or obs in observations:
            chosen.append(exp)
            groups[exp.root] = group
    if not chosen:
        where = settings.exposures or os.path.join(settings.workdir, settings.uncal_dir)
        raise CeersError(f"no exposures of pointing {label} in {where}")
    return label, Plan(tuple(ex.with_filters(chosen, values)), groups, values, settings)


def generate(pointing, settings, pointings=None):
    """Write the run files of every stage for a pointing (or ``all``).

    Parameters
    ----------
    pointing : str
        ``1``, ``nircam1`` ... or ``all``.
    settings : BatchSettings
    pointings : astropy.table.Table, optional
        The pointing table (default: the packaged one).

    Returns
    -------
    list of str
        The run files written, in execution order (also listed in the
        folder's ``stages.txt``).
    """
    label, plan = make_plan(pointing, settings, pointings)
    out_dir = os.path.join(settings.batch_dir, label)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    extra = settings.extra_options()
    for stage in stage_order(settings):
        lines = [dataclasses.replace(line, command=shlex.join([*shlex.split(line.command),
                                                               *extra[stage]]))
                 if stage in extra else line for line in BUILDERS[stage](plan)]
        if not lines:
            log.info("%s: no lines for %s", label, stage)
            continue
        path = os.path.join(out_dir, f"{stage}.run")
        write_run_file(path, stage, lines, settings.workdir)
        written.append(path)
        log.info("%s: %d lines", path, len(lines))
    write_order(out_dir, [os.path.basename(p) for p in written])
    log.info("%s: %d exposures, %d run files in %s", label, len(plan.exposures), len(written), out_dir)
    return written


# --------------------------------------------------------------------------- reading lines back

# Scripts of the CEERS DR0.5 batch files and of this project, by file name.
_SCRIPT_STEPS = {os.path.basename(path): stage for stage, path in SCRIPTS.items()}
# strun parameter files of the DR0.5 batch files, by name prefix (longest first).
_PARAMFILE_STEPS = (("image3_part1", "image3_part1"), ("image3", "make_mosaics"), ("image2", "image2"))
_SWITCHES = {"--fit", "--save_patterns", "--delete_interim", "--save_results"}
_TARGET_OPTIONS = {"--image", "--pointing", "--visit", "--filter"}


@dataclasses.dataclass(frozen=True)
class Command:
    """A batch line read back: step, what it works on, and its parameters.

    Attributes
    ----------
    step : str
        Stage name.
    target : str
        Exposure root, association name (``nircam1_f150w``), pointing, or
        ``<visit>_<filter>`` for astrometry.
    params : dict
        Options other than the target, values as float where numeric
        (True for a switch).
    inputs : tuple
        Positional arguments after the first.
    """

    step: str
    target: str
    params: dict
    inputs: tuple = ()


def _value(text):
    try:
        return float(text)
    except ValueError:
        return text


def _split_args(words, where):
    positional, options, i = [], {}, 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            flag, eq, val = word.partition("=")
            if eq:
                options[flag] = _value(val)
            elif flag in _SWITCHES:
                options[flag] = True
            elif i + 1 < len(words):
                options[flag] = _value(words[i + 1])
                i += 1
            else:
                raise CeersError(f"{where}: option {flag} has no value")
        else:
            positional.append(word)
        i += 1
    return positional, options


def _program(words, where):
    if words[0] == "strun" and len(words) >= 2:
        param = os.path.basename(words[1])
        for prefix, step in _PARAMFILE_STEPS:
            if param.startswith(prefix):
                return step, words[2:]
    if words[0].startswith("python") and len(words) >= 2:
        step = _SCRIPT_STEPS.get(os.path.basename(words[1]))
        if step:
            return step, words[2:]
    raise CeersError(f"{where}: not a CEERS batch command: {shlex.join(words)}")


def parse_command(text, where="line"):
    """Read a batch line (ours or a CEERS DR0.5 one) as a :class:`Command`.

    Raises
    ------
    CeersError
        If the line is malformed, calls no known stage script or lacks its target.
    """
    words = check_command(text, where)
    step, rest = _program(words, where)
    positional, options = _split_args(rest, where)
    try:
        if step in ("associations", "mosaic_background"):
            target = str(options["--pointing"])
        elif step == "astrometry":
            target = f"{options['--visit']}_{str(options['--filter']).lower()}"
        elif step in ("image3_part1", "make_mosaics"):
            target = re.sub(r"(_final)?\.json$", "", os.path.basename(positional[0]))
        else:
            target = names.exposure_root(options.get("--image") or positional[0])
    except (KeyError, IndexError):
        raise CeersError(f"{where}: malformed line (no file or pointing to work on): {text}") from None
    params = {k: v for k, v in options.items() if k not in _TARGET_OPTIONS}
    skip = 0 if "--image" in options or step in ("associations", "mosaic_background", "astrometry") else 1
    return Command(step, target, params, tuple(positional[skip:]))
