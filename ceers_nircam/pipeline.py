"""Parameter files for the jwst pipelines, and running them through strun.

CEERS ran calwebb_image2 and the first half of calwebb_image3 as
``strun <parameter file> <input>``, with parameter files written for the
pipeline version of the day. Here the parameter files are written for the
installed jwst from a short list of the settings that differ from its
defaults (:data:`IMAGE2`, :data:`IMAGE3_PART1`), so every other parameter is
the installed version's own default, and they are run with strun's own
command-line machinery (``stpipe``), in-process.

strun writes its products itself; :func:`run_strun` points it at a hidden
directory beside the real output directory and moves the products over
only when the run has succeeded, so a failed or interrupted run leaves no
half-written product under a real name.
"""

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile

from . import history
from .cli import CeersError, get_logger, option
from .fitsio import atomic_path

log = get_logger("pipeline")


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """A jwst pipeline and the parameters CEERS set differently from its defaults.

    ``steps`` maps a step name to a tuple of (parameter, value) pairs;
    ``name`` is the stem of the parameter file (``image2`` ->
    ``image2_<jwst version>.asdf``).
    """

    name: str
    pipeline: str
    steps: tuple = ()

    def step_parameters(self):
        """The ``steps`` argument of the pipeline's constructor."""
        return {step: dict(pars) for step, pars in self.steps}


# calwebb_image2 with default parameters, resample skipped (mosaics come in stage 3).
IMAGE2 = PipelineSettings("image2", "jwst.pipeline.Image2Pipeline",
                          (("resample", (("skip", True),)),))

# calwebb_image3 up to outlier detection. The WCS is aligned beforehand
# (astrometry or updatewcs), so tweakreg is off; SkyMatch only measures
# (subtract off: it records the sky in the headers, the pedestal is removed
# later per image); OutlierDetection keeps the installed defaults.
IMAGE3_PART1 = PipelineSettings("image3_part1", "jwst.pipeline.Image3Pipeline", (
    ("tweakreg", (("skip", True),)),
    ("skymatch", (("skymethod", "local"), ("skystat", "mode"), ("subtract", False))),
    ("outlier_detection", ()),
    ("resample", (("skip", True),)),
    ("source_catalog", (("skip", True),)),
))


@dataclasses.dataclass(frozen=True)
class Image2Params:
    """Command-line options of stage2/image2.py."""

    input_dir: str = option("", "directory of the rate file when it is given without one")
    output_dir: str = option("calibrated", "where the _cal.fits file goes")
    parameter_file: str = option("", "strun parameter file to use as it is (default: "
                                 "image2_<jwst version>.asdf, written into --output_dir)")


@dataclasses.dataclass(frozen=True)
class Image3Part1Params:
    """Command-line options of stage3/image3_part1.py."""

    output_dir: str = option("calibrated", "where the _a3001_crf.fits files go")
    parameter_file: str = option("", "strun parameter file to use as it is (default: "
                                 "image3_part1_<jwst version>.asdf, written beside the association)")


def keep_member_status(statuses, step="tweakreg", asn_id="a3001"):
    """An ``edit`` for :func:`run_strun` that gives each product back its member's ``step`` status.

    Image3 marks the steps it skips as SKIPPED in every product, although the
    members went through them before (the astrometry aligned them: their WCS
    is the one the products carry). ``statuses`` maps a member's root name
    (``<root>_<asn_id>_crf.fits`` for a product) to its status.
    """
    def edit(model):
        root = model.meta.filename.split(f"_{asn_id}_")[0]
        status = statuses.get(root)
        if status and getattr(model.meta.cal_step, step) == "SKIPPED":
            setattr(model.meta.cal_step, step, status)

    return edit


def jwst_version():
    """The installed jwst version string."""
    from jwst import __version__

    return __version__


def default_parameter_file(settings, directory="."):
    """``<directory>/<name>_<jwst version>.asdf``, as CEERS named theirs (image2_1.7.2.asdf)."""
    return os.path.join(directory, f"{settings.name}_{jwst_version()}.asdf")


def _pipeline_class(settings):
    module, _, cls = settings.pipeline.rpartition(".")
    return getattr(__import__(module, fromlist=[cls]), cls)


def write_parameter_file(settings, path):
    """Write the strun parameter file of ``settings`` for the installed jwst; return ``path``.

    The file lists every parameter of the pipeline and its steps, as
    ``Step.export_config`` writes them, with CEERS's settings applied.
    """
    pipeline = _pipeline_class(settings)(steps=settings.step_parameters())
    with atomic_path(path) as tmp:
        pipeline.export_config(tmp)
    return path


def load_parameter_file(path):
    """The pipeline instance the installed jwst makes of a parameter file (as strun would)."""
    from stpipe import Step

    try:
        return Step.from_config_file(path)
    except Exception as err:  # stpipe raises several types for a bad file
        raise CeersError(f"{path}: not a usable parameter file ({err})") from None


def ensure_parameter_file(settings, path=None, directory="."):
    """The parameter file to run: ``path`` as the user wrote it, or a fresh one for this jwst."""
    if path:
        if not os.path.exists(path):
            raise CeersError(f"{path}: no such parameter file")
        return path
    path = default_parameter_file(settings, directory)
    write_parameter_file(settings, path)
    log.info("Parameter file for jwst %s: %s", jwst_version(), path)
    return path


@contextlib.contextmanager
def _stpipe_logging():
    # strun attaches its own handler to the pipeline's loggers; ours on the root
    # logger would print every pipeline line a second time.
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_ceers", False)]
    for handler in ours:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in ours:
            root.addHandler(handler)


def run_strun(parameter_file, input_path, output_dir, options=(), step=None, params=None,
              edit=None):
    """Run ``strun parameter_file input_path --output_dir ...``; return the products' paths.

    The products are written to a hidden directory inside ``output_dir``,
    given the history entry of ``step`` (with ``params``) when one is named
    (after ``edit(model)``, if given, has had its say), and moved into
    ``output_dir`` only after all of that succeeded.
    """
    from stpipe import Step

    os.makedirs(output_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".strun.", dir=output_dir)
    try:
        try:
            with _stpipe_logging():
                Step.from_cmdline([os.fspath(parameter_file), os.fspath(input_path),
                                   f"--output_dir={staging}", *options])
        except Exception as err:  # whatever the pipeline raised: one line for the user
            log.debug("strun failed", exc_info=True)
            text = str(err).strip()
            reason = text.splitlines()[0] if text else type(err).__name__
            raise CeersError(f"{input_path}: strun {os.path.basename(parameter_file)} failed: "
                             f"{reason}") from None
        products = sorted(os.path.join(staging, n) for n in os.listdir(staging)
                          if not n.startswith("."))
        if step:
            record_history([p for p in products if p.endswith(".fits")], step, params, edit)
        moved = []
        for path in products:
            dest = os.path.join(output_dir, os.path.basename(path))
            os.replace(path, dest)
            moved.append(dest)
        return moved
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def record_history(paths, step, params, edit=None):
    """Append the history entry of ``step`` to each datamodel file in ``paths`` (after ``edit``)."""
    from stdatamodels.jwst import datamodels

    from .fitsio import save_model

    for path in paths:
        with datamodels.open(path) as model:
            if edit is not None:
                edit(model)
            history.record(model, step, params)
            save_model(model, path)
