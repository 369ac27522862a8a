"""Importing the real CEERS DR0.5 batch files and generating again gives the same lines.

Reads ``../shared/data/ceers-dr05/batch_scripts`` in place (never copied into
the project): the 690 epoch-1 images, in ``all/`` and in the four pointing
folders. Lines are compared as (step, image or association, parameters).
"""

import collections
import glob
import os

import dr05_data
import pytest

from ceers_nircam import download
from ceers_nircam.batch import ceers_import, exposures, stages

BATCH = dr05_data.path("batch_scripts")
FOLDERS = ("all", "nircam1", "nircam2", "nircam3", "nircam6")
PER_IMAGE = ("detector1_and_snowballs", "wisp_subtraction", "remstriping", "image2", "update_wcs",
             "skysub_varscale")
NIMAGES = {"all": 690, "nircam1": 210, "nircam2": 240, "nircam3": 120, "nircam6": 120}

pytestmark = dr05_data.needed


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The DR0.5 values imported from every folder, written as a table."""
    values = ceers_import.import_runs([os.path.join(BATCH, f) for f in FOLDERS])
    table = tmp_path_factory.mktemp("dr05") / "dr05_values.csv"
    exposures.write_values_table(str(table), values)
    return values, str(table)


def _lines_by_step(folder):
    """{step: Counter of (target, parameters)} over the .run files of a folder."""
    found = collections.defaultdict(collections.Counter)
    for path in glob.glob(os.path.join(folder, "*.run")):
        for _, cmd in ceers_import.read_run_commands(path):
            found[cmd.step][(cmd.target, frozenset(cmd.params.items()))] += 1
    return found


def test_import_finds_every_epoch1_image_with_its_values(imported):
    values, _ = imported
    assert len(values) == 690
    assert sum(v.wisp_scale is not None for v in values.values()) == 132
    assert all(v.thresh is not None and v.filter is not None for v in values.values())
    # Images per observation and filter agree with the pointing table.
    found = collections.Counter((stages.names.exposure_parts(r)["observation"], v.filter)
                                for r, v in values.items())
    table = download.load_pointings()
    expected = {(int(row["observation"]), str(row["filter"])): int(row["nimages"])
                for row in table if row["epoch"] == 1}
    assert dict(found) == expected


@pytest.mark.parametrize("folder", FOLDERS)
def test_regenerated_lines_equal_the_originals(imported, tmp_path, folder):
    _, table = imported
    settings = stages.BatchSettings(exposures=table, table=table, batch_dir=str(tmp_path),
                                    workdir=str(tmp_path))
    stages.generate(folder, settings)
    ours = _lines_by_step(tmp_path / folder)
    theirs = _lines_by_step(os.path.join(BATCH, folder))
    for step in PER_IMAGE:
        assert ours[step] and ours[step] == theirs[step], step
    images = {target for target, _ in ours["detector1_and_snowballs"]}
    assert len(images) == NIMAGES[folder]
    assert ours["image3_part1"] == theirs["image3_part1"]
    if folder != "all":  # DR0.5's all/ mosaics the whole field at once (epoch1_*) instead
        # The same mosaics (DR0.5 gave the grid in a parameter file, we give --grid) ...
        ours_mosaics = {target for target, _ in ours["make_mosaics"]}
        theirs_mosaics = {target for target, _ in theirs["make_mosaics"]}
        assert all(dict(params) == {"--grid": stages.pointing_name(folder)}
                   for _, params in ours["make_mosaics"])
        # ... except that pointing 2 also mosaicked observations 2 and 52 together.
        assert theirs_mosaics - ours_mosaics == (
            {"nircam2all_f200w", "nircam2all_f444w"} if folder == "nircam2" else set())
        assert ours_mosaics <= theirs_mosaics
