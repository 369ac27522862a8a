"""The generator: run files of every stage from the files present or from a list, with per-image values."""

import json
import os
import shlex

import pytest
from astropy.io import fits

from ceers_nircam.batch import exposures, stages
from ceers_nircam.batch.runfile import ORDER_FILE, read_run_file
from ceers_nircam.cli import CeersError

A1 = "jw01345001001_02201_00001_nrca1"      # F115W
A3 = "jw01345001001_10201_00001_nrca3"      # F150W: wisps
B4 = "jw01345001001_14201_00002_nrcb4"      # F200W: wisps
LW = "jw01345001001_02201_00001_nrcalong"   # F277W
P2 = "jw01345002001_14201_00001_nrca3"      # pointing 2, F200W
P2B = "jw01345052001_02201_00001_nrca3"     # pointing 2, observation 52, F200W
FILTERS = {A1: "F115W", A3: "F150W", B4: "F200W", LW: "F277W", P2: "F200W", P2B: "F200W"}


def _uncal(folder, root, filt):
    folder.mkdir(parents=True, exist_ok=True)
    header = fits.Header({"TELESCOP": "JWST", "INSTRUME": "NIRCAM", "FILTER": filt,
                          "DETECTOR": root.split("_")[-1].upper()})
    fits.PrimaryHDU(header=header).writeto(folder / f"{root}_uncal.fits")


@pytest.fixture
def work(tmp_path):
    """A working directory with raw files of pointings 1 and 2 (one sorted into uncals/nircam2)."""
    for root, filt in FILTERS.items():
        _uncal(tmp_path / "uncals" / ("nircam2" if root in (P2, P2B) else ""), root, filt)
    return tmp_path


def _generate(work, pointing="1", **options):
    settings = stages.BatchSettings(workdir=str(work), batch_dir=str(work / "batch"),
                                    scripts_dir=str(work), **options)
    return stages.generate(pointing, settings)


def _commands(path):
    return [line.command for _, line in read_run_file(path).lines]


def _lines(path):
    return [line for _, line in read_run_file(path).lines]


def test_every_stage_in_execution_order_from_the_files_present(work):
    written = _generate(work)
    folder = work / "batch" / "nircam1"
    expected = ["detector1_and_snowballs", "wisp_subtraction", "remstriping", "image2", "update_wcs",
                "associations", "image3_part1", "skysub_varscale", "make_mosaics", "mosaic_background"]
    assert [os.path.basename(p) for p in written] == [f"{s}.run" for s in expected]
    assert (folder / ORDER_FILE).read_text().split() == [f"{s}.run" for s in expected]
    counts = {s: len(_lines(str(folder / f"{s}.run"))) for s in expected}
    assert counts == {"detector1_and_snowballs": 4, "wisp_subtraction": 2, "remstriping": 4,
                      "image2": 4, "update_wcs": 4, "associations": 1, "image3_part1": 4,
                      "skysub_varscale": 4, "make_mosaics": 4, "mosaic_background": 1}


@pytest.mark.parametrize("stage, first_command, outputs, history", [
    ("detector1_and_snowballs", f"python stage1/snowball_wrapper.py {A1}_uncal.fits",
     (f"calibrated/{A1}_rate.fits",), None),
    ("wisp_subtraction", f"python stage1/wispsub.py calibrated/{A3}_rate.fits --fit",
     (f"calibrated/{A3}_rate.fits",), "wispsub"),
    ("remstriping", f"python stage1/remstriping.py calibrated/{A1}_rate.fits --thresh 0.8 --save_patterns",
     (f"calibrated/{A1}_rate.fits",), "remstriping"),
    ("image2", f"python stage2/image2.py calibrated/{A1}_rate.fits", (f"calibrated/{A1}_cal.fits",), None),
    ("update_wcs", f"python stage3/updatewcs.py --image calibrated/{A1}_cal.fits",
     (f"calibrated/{A1}_tweakreg.fits",), None),
    ("associations", "python stage3/associations.py --pointing nircam1",
     tuple(f"nircam1_{f}{s}.json" for f in ("f115w", "f150w", "f200w", "f277w") for s in ("", "_final")),
     None),
    ("image3_part1", "python stage3/image3_part1.py nircam1_f115w.json",
     (f"calibrated/{A1}_a3001_crf.fits",), None),
    ("skysub_varscale", f"python stage3/skywcsvar.py --image calibrated/{A1}_a3001_crf.fits",
     (f"calibrated/{A1}_a3001_match.fits",), None),
    ("make_mosaics", "python stage3/make_mosaic.py nircam1_f115w_final.json --grid nircam1",
     ("mosaics/ceers_nircam1_f115w_i2d.fits",), None),
    ("mosaic_background", "python stage3/mosaic_background.py --pointing nircam1 "
     + " ".join(f"mosaics/ceers_nircam1_{f}_i2d.fits" for f in ("f115w", "f150w", "f200w", "f277w")),
     tuple(f"mosaics/ceers_nircam1_{f}_mbkgsub1.fits" for f in ("f115w", "f150w", "f200w", "f277w")),
     None),
])
def test_lines_call_the_stage_scripts_and_name_their_outputs(work, stage, first_command, outputs,
                                                             history):
    _generate(work)
    line = _lines(str(work / "batch" / "nircam1" / f"{stage}.run"))[0]
    assert line.command == first_command
    assert line.outputs == outputs
    assert line.history == history


def test_wisp_lines_only_for_wisp_detectors_in_f150w_and_f200w(work):
    _generate(work)
    keys = [line.key for line in _lines(str(work / "batch" / "nircam1" / "wisp_subtraction.run"))]
    assert keys == [A3, B4]


def test_table_values_reach_the_lines(work):
    table = work / "values.csv"
    table.write_text(f"exposure,filter,wisp_scale,thresh\n{A3}_rate.fits,F150W,0.57,0.15\n"
                     f"{LW},,,0.2\n{B4},F200W,,\n")
    _generate(work, table=str(table))
    wisp = _commands(str(work / "batch" / "nircam1" / "wisp_subtraction.run"))
    assert wisp == [f"python stage1/wispsub.py calibrated/{A3}_rate.fits --scale 0.57",
                    f"python stage1/wispsub.py calibrated/{B4}_rate.fits --fit"]
    thresh = {shlex.split(c)[2]: shlex.split(c)[4]
              for c in _commands(str(work / "batch" / "nircam1" / "remstriping.run"))}
    assert thresh == {f"calibrated/{r}_rate.fits": t
                      for r, t in ((A1, "0.8"), (A3, "0.15"), (B4, "0.8"), (LW, "0.2"))}


def test_observation_52_is_associated_and_mosaicked_as_nircam2b(work):
    _generate(work, pointing="nircam2")
    folder = work / "batch" / "nircam2"
    detector1 = _commands(str(folder / "detector1_and_snowballs.run"))
    assert detector1 == [f"python stage1/snowball_wrapper.py {r}_uncal.fits --input_dir uncals/nircam2"
                         for r in (P2, P2B)]
    (asn,) = _lines(str(folder / "associations.run"))
    assert asn.command == "python stage3/associations.py --pointing nircam2"
    assert asn.outputs == ("nircam2_f200w.json", "nircam2_f200w_final.json",
                           "nircam2b_f200w.json", "nircam2b_f200w_final.json")
    mosaics = _commands(str(folder / "make_mosaics.run"))
    assert mosaics == ["python stage3/make_mosaic.py nircam2_f200w_final.json --grid nircam2",
                       "python stage3/make_mosaic.py nircam2b_f200w_final.json --grid nircam2"]


def test_all_covers_every_pointing(work):
    _generate(work, pointing="all")
    lines = _lines(str(work / "batch" / "all" / "detector1_and_snowballs.run"))
    assert sorted(line.key for line in lines) == sorted(FILTERS)
    background = _commands(str(work / "batch" / "all" / "mosaic_background.run"))
    assert [shlex.split(c)[3] for c in background] == ["nircam1", "nircam2"]


def test_astrometry_instead_of_saved_wcs(work):
    _generate(work, alignment="astrometry", refcat="hst_egs.ecsv", save_results=True)
    folder = work / "batch" / "nircam1"
    assert not (folder / "update_wcs.run").exists()
    lines = _lines(str(folder / "astrometry.run"))
    assert len(lines) == 4  # one visit, four filters
    first = lines[0]
    assert first.command == ("python stage3/astrometry.py --visit jw01345001001 --filter F115W "
                             "--config tweakreg_cfgs/nircam1/f115w.cfg --refcat hst_egs.ecsv "
                             f"--save_results calibrated/{A1}_cal.fits")
    assert first.outputs == (f"calibrated/{A1}_tweakreg.fits",)
    assert "astrometry.run" in (folder / ORDER_FILE).read_text()


def test_astrometry_needs_a_reference_catalog(work):
    with pytest.raises(CeersError, match="--refcat"):
        _generate(work, alignment="astrometry")


def test_directories_and_switches_are_passed_on(work):
    _generate(work, calibrated_dir="cal", mosaic_dir="mos", asn_dir="asn", cores="half",
              delete_interim=True, save_patterns=False, wisp_template_dir="wisps", wcs_dir="wcs",
              background_config="bg.cfg", stages=("detector1_and_snowballs", "remstriping",
                                                  "update_wcs", "make_mosaics", "wisp_subtraction",
                                                  "mosaic_background"))
    folder = work / "batch" / "nircam1"
    assert (folder / ORDER_FILE).read_text().split() == [
        "detector1_and_snowballs.run", "wisp_subtraction.run", "remstriping.run", "update_wcs.run",
        "make_mosaics.run", "mosaic_background.run"]
    first = {s: _commands(str(folder / f"{s}.run"))[0] for s in
             ("detector1_and_snowballs", "wisp_subtraction", "remstriping", "update_wcs",
              "make_mosaics", "mosaic_background")}
    assert first["detector1_and_snowballs"] == (f"python stage1/snowball_wrapper.py {A1}_uncal.fits "
                                                "--output_dir cal --cores half --delete_interim")
    assert first["wisp_subtraction"].endswith("--fit --template_dir wisps")
    assert first["remstriping"] == f"python stage1/remstriping.py cal/{A1}_rate.fits --thresh 0.8"
    assert first["update_wcs"] == f"python stage3/updatewcs.py --image cal/{A1}_cal.fits --wcs_dir wcs"
    assert first["make_mosaics"] == ("python stage3/make_mosaic.py asn/nircam1_f115w_final.json "
                                     "--grid nircam1 --output_dir mos")
    assert first["mosaic_background"].startswith(
        "python stage3/mosaic_background.py --pointing nircam1 --config bg.cfg mos/ceers_nircam1_f115w_i2d")


def test_extra_options_reach_every_line_of_their_stage(work):
    _generate(work, stages=("detector1_and_snowballs", "wisp_subtraction"),
              extra=("wisp_subtraction=--plot", "detector1_and_snowballs=--save_mask --cores all"))
    folder = work / "batch" / "nircam1"
    assert all(c.endswith("--fit --plot") for c in _commands(str(folder / "wisp_subtraction.run")))
    detector1 = _commands(str(folder / "detector1_and_snowballs.run"))
    assert len(detector1) == 4 and all(c.endswith("--save_mask --cores all") for c in detector1)
    with pytest.raises(CeersError, match="expected STAGE='OPTIONS'"):
        _generate(work, extra=("wisps=--plot",))


def test_scripts_outside_the_working_directory_are_named_by_absolute_path(work, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("repo")
    settings = stages.BatchSettings(workdir=str(work), batch_dir=str(work / "batch"),
                                    scripts_dir=str(elsewhere), stages=("image2",))
    (path,) = stages.generate("1", settings)
    assert _commands(path)[0].split()[1] == str(elsewhere / "stage2" / "image2.py")
    assert read_run_file(path).workdir == str(work)


def test_from_a_list_of_names_without_files(tmp_path):
    names = tmp_path / "exposures.txt"
    names.write_text(f"# pointing 1\n{A1}_uncal.fits\n{A3}\n")
    table = tmp_path / "values.csv"
    table.write_text(f"exposure,filter,wisp_scale,thresh\n{A1},F115W,,\n{A3},F150W,0.61,\n")
    (path,) = stages.generate("1", stages.BatchSettings(
        workdir=str(tmp_path), batch_dir=str(tmp_path / "b"), scripts_dir=str(tmp_path),
        exposures=str(names), table=str(table), stages=("wisp_subtraction",)))
    assert _commands(path) == [f"python stage1/wispsub.py calibrated/{A3}_rate.fits --scale 0.61"]


def test_a_list_without_filters_is_an_error(tmp_path):
    names = tmp_path / "exposures.txt"
    names.write_text(f"{A1}\n")
    with pytest.raises(CeersError, match="filter unknown for 1 exposure"):
        stages.generate("1", stages.BatchSettings(workdir=str(tmp_path), exposures=str(names),
                                                  batch_dir=str(tmp_path / "b")))


@pytest.mark.parametrize("pointing, message", [
    ("7", "unknown pointing '7'"),
    ("nircam3", "no exposures of pointing nircam3"),
])
def test_pointing_errors(work, pointing, message):
    with pytest.raises(CeersError, match=message):
        _generate(work, pointing=pointing)


@pytest.mark.parametrize("content, message", [
    ("filter,thresh\nF150W,0.8\n", "needs an 'exposure' column"),
    (f"exposure,thresh\n{A1},high\n", "thresh 'high' is not a number"),
    (f"exposure,filter\n{A1},F999W\n", "unknown filter 'F999W'"),
    (f"exposure,thresh\n{A1},0.8\n{A1}_rate.fits,0.2\n", "listed twice"),
    ("exposure,thresh\nnot_an_exposure,0.8\n", "not a JWST exposure name"),
])
def test_bad_tables_are_one_line_errors(tmp_path, content, message):
    table = tmp_path / "t.csv"
    table.write_text(content)
    with pytest.raises(CeersError, match=message):
        exposures.read_values_table(str(table))


def test_every_generated_line_reads_back_as_its_stage_and_key(work):
    for path in _generate(work, pointing="all"):
        for line in _lines(path):
            command = stages.parse_command(line.command)
            assert (command.step, command.target) == (read_run_file(path).stage, line.key)


def test_sidecar_records_stage_and_working_directory(work):
    (path,) = _generate(work, stages=("image2",))
    with open(path.replace(".run", ".lines.json")) as fh:
        sidecar = json.load(fh)
    assert sidecar["stage"] == "image2" and sidecar["workdir"] == str(work)
    assert [d["key"] for d in sidecar["lines"]] == sorted([A1, A3, B4, LW])
