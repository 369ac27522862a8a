"""Tests of ceersdownload.py and ceers_nircam.download.

The command runs as a user runs it, in a subprocess, with the real astroquery
client talking to a MAST stand-in on 127.0.0.1 (tests/mast_server.py). The
server is chosen the way any astroquery user chooses it: an ``astroquery.cfg``
with ``[mast] server = ...`` in the astropy configuration directory
(``ASTROPY_CONFIG_DIR``). astroquery reads it when it is imported, which is
why the command runs in its own process.
"""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from astropy.io import fits
from astropy.table import Table

from ceers_nircam import download
from ceers_nircam.cli import CeersError
import dr05_data
from mast_server import Archive, MastSimulator

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "ceersdownload.py"
SEVEN = ("F115W", "F150W", "F200W", "F277W", "F356W", "F410M", "F444W")

# The simulated archive: a few exposures per observation and filter (MAST has more).
CEERS_VISITS = [  # observation, filters, exposures per filter
    (1, ("F115W",), 2), (1, SEVEN[1:], 1),
    (2, SEVEN, 1), (52, ("F200W", "F444W"), 1),
    (3, SEVEN, 1), (4, SEVEN, 1),
    (69, ("F115W", "F277W"), 1),   # epoch 2, pointing 9
    (7, ("F150W",), 1),            # an observation the pointing table does not have
]
DECOYS = [  # program, observation, instrument, filter: none of these may ever be fetched
    (1345, 1, "MIRI/IMAGE", "F770W"),     # the MIRI parallel shares the observation number
    (1345, 1, "NIRISS/IMAGE", "F150W"),   # another imager with a filter of the same name
    (1345, 1, "NIRCAM/IMAGE", "F090W"),   # a filter not asked for
    (2079, 1, "NIRCAM/IMAGE", "F115W"),   # another program, same observation number
]
# Where --sort_files must put each observation (written out here, not read from the package).
SORTED_DIR = {1: "nircam1", 2: "nircam2", 52: "nircam2", 3: "nircam3", 4: "nircam6",
              69: "nircam9", 7: "obs007"}


def build_archive():
    archive = Archive()
    for observation, filters, exposures in CEERS_VISITS:
        for filt in filters:
            archive.add_visit(1345, observation, "NIRCAM/IMAGE", filt, exposures)
    for program, observation, instrument, filt in DECOYS:
        archive.add_visit(program, observation, instrument, filt, 1)
    return archive


def expected_files(archive, subgroup="UNCAL", observations=None, filters=SEVEN):
    """Names of the CEERS NIRCam science files of a type, from the archive's own records."""
    level3 = {o["obsid"]: o for o in archive.observations if o["calib_level"] == 3}
    names = set()
    for obsid, parent in level3.items():
        if (parent["proposal_id"] != "1345" or parent["instrument_name"] != "NIRCAM/IMAGE"
                or parent["filters"] not in filters):
            continue
        for product in archive.products[obsid]:
            obs = download.observation_number(product["productFilename"])
            if (product["productType"] == "SCIENCE" and product["productSubGroupDescription"] == subgroup
                    and (observations is None or obs in observations)):
                names.add(product["productFilename"])
    return names


@pytest.fixture(scope="module")
def mast_module(tmp_path_factory):
    sim = MastSimulator(build_archive()).start()
    config = tmp_path_factory.mktemp("astropy-config")
    # pagesize 7 makes MAST answers span several pages, as large real answers do
    (config / "astroquery.cfg").write_text(f"[mast]\nserver = {sim.url}\npagesize = 7\n")
    sim.config_dir = config
    sim.cache_dir = tmp_path_factory.mktemp("astropy-cache")
    yield sim
    sim.stop()


@pytest.fixture
def mast(mast_module):
    mast_module.reset()
    return mast_module


def run_cli(mast, cwd, *args):
    env = dict(os.environ, ASTROPY_CONFIG_DIR=str(mast.config_dir), ASTROPY_CACHE_DIR=str(mast.cache_dir),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return subprocess.run([sys.executable, str(CLI), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def read_manifest(folder):
    table = Table.read(folder / "manifest.ecsv", format="ascii.ecsv")
    return {Path(row["file"]).name: row for row in table}


def files_under(folder):
    return {p.relative_to(folder): p for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- pointing table

@dr05_data.needed
def test_pointing_table_matches_dr05_epoch1():
    dr05 = Table.read(dr05_data.path("ceersobs.dat"), format="ascii.commented_header")
    ours = download.load_pointings()
    ours = ours[ours["epoch"] == 1]
    as_rows = lambda t: sorted((int(r["pointing"]), int(r["observation"]), str(r["filter"]).lower(),  # noqa: E731
                                int(r["nimages"])) for r in t)
    assert as_rows(ours) == as_rows(dr05)


@pytest.mark.parametrize("pointing, expected", [
    (1, {1: {"F115W": 96, "F150W": 48, "F200W": 24, "F277W": 12, "F356W": 12, "F410M": 12, "F444W": 6}}),
    (2, {2: {"F115W": 96, "F150W": 48, "F200W": 24, "F277W": 12, "F356W": 12, "F410M": 12, "F444W": 6},
         52: {"F200W": 24, "F444W": 6}}),
    (3, {3: {"F115W": 48, "F150W": 24, "F200W": 24, "F277W": 6, "F356W": 6, "F410M": 6, "F444W": 6}}),
    (6, {4: {"F115W": 48, "F150W": 24, "F200W": 24, "F277W": 6, "F356W": 6, "F410M": 6, "F444W": 6}}),
])
def test_pointing_table_epoch1_counts(pointing, expected):
    table = download.load_pointings()
    rows = table[table["pointing"] == pointing]
    found = {}
    for row in rows:
        found.setdefault(int(row["observation"]), {})[str(row["filter"])] = int(row["nimages"])
    assert found == expected
    assert set(rows["epoch"]) == {1}
    assert download.observations_for(str(pointing), table) == sorted(expected)


def test_pointing_table_epoch2_known_only():
    table = download.load_pointings()
    assert int(table["nimages"][table["epoch"] == 1].sum()) == 690
    epoch2 = table[table["epoch"] == 2]
    assert list(epoch2["pointing"]) == [9] and list(epoch2["observation"]) == [69]
    assert epoch2["nimages"].mask.all() and epoch2["filter"].mask.all()
    assert download.observations_for("9", table) == [69]
    assert download.observations_for("ALL", table) is None


@pytest.mark.parametrize("name, observation", [
    ("jw01345001001_02101_00001_nrca1_uncal.fits", 1),
    ("jw01345052001_02101_00003_nrcblong_cal.fits", 52),
    ("jw01345-o069_t001_nircam_clear-f277w_i2d.fits", 69),
    ("/data/uncals/jw01345004001_02101_00001_nrcb4_rate.fits", 4),
    ("ceers_nircam1_f115w_i2d.fits", None),
])
def test_observation_number(name, observation):
    assert download.observation_number(name) == observation


# --------------------------------------------------------------------------- selection and retries

def test_select_products_keeps_one_type_once_from_chosen_observations():
    archive = build_archive()
    observations = Table(rows=[[o[k] for k in ("obsid", "filters", "target_name", "obs_id")]
                               for o in archive.observations],
                         names=("obsid", "filters", "target_name", "obs_id"))
    rows = [p for products in archive.products.values() for p in products]
    products = Table(rows=[[p[k] for k in p] for p in rows], names=list(rows[0]))
    want = expected_files(archive, "RATE", [2, 52])
    assert len(products) > 2 * len(want)          # every file is listed under two obsids
    # with MAST's filters column, and without it (filter taken from the observation)
    for table in (products, products[[c for c in products.colnames if c != "filters"]]):
        chosen = download.select_products(table, "rate", [2, 52], observations)
        assert sorted(chosen["productFilename"]) == sorted(want)   # once each, one type only
        assert set(chosen["obs"]) == {2, 52}
        for name, filt in zip(chosen["productFilename"], chosen["filter"]):
            assert fits.getval(io.BytesIO(archive.files[name]), "FILTER") == filt


@pytest.mark.parametrize("error, calls", [
    (requests.ConnectionError("connection reset"), 3),
    (download.TransferError("received 10 of 20 bytes"), 3),
    (download.TransferError("HTTPError: 404", transient=False), 1),
    (ValueError("a bug"), 1),
])
def test_with_retries_retries_only_transient_failures(error, calls):
    seen = []

    def always_fails():
        seen.append(1)
        raise error

    with pytest.raises(type(error)):
        download.with_retries(always_fails, retries=2, delay=0)
    assert len(seen) == calls


def test_observations_for_unknown_pointing_names_the_known_ones():
    with pytest.raises(CeersError, match=r"unknown pointing '5'; known pointings are 1, 2, 3, 6, 9 or all"):
        download.observations_for("5", download.load_pointings())


# --------------------------------------------------------------------------- the command

@pytest.mark.parametrize("pointing", ["5", "nircam1", "-1"])
def test_unknown_pointing_is_one_line_error(mast, tmp_path, pointing):
    result = run_cli(mast, tmp_path, pointing)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: unknown pointing")
    assert "1, 2, 3, 6, 9 or all" in lines[0]
    assert mast.requests == []                      # refused before asking MAST anything
    assert list(tmp_path.iterdir()) == []


def test_pointing_1_fetches_exactly_observation_1(mast, tmp_path):
    result = run_cli(mast, tmp_path, "1")           # every default, as the original script
    assert result.returncode == 0, result.stderr
    want = expected_files(mast.archive, "UNCAL", [1])
    assert len(want) == 8
    out = tmp_path / "uncals"
    files = files_under(out)
    fetched = {p.name: p for rel, p in files.items() if rel.parts[0] == "mastDownload"}
    assert set(fetched) == want
    for name, path in fetched.items():
        # astroquery's layout: mastDownload/JWST/<obs_id>/<file>
        assert path.relative_to(out).parts[:3] == ("mastDownload", "JWST", name.rsplit("_", 1)[0])
        assert path.read_bytes() == mast.archive.files[name]
        assert fits.getval(path, "OBSERVTN") == "001"
    assert set(files) == {Path("manifest.ecsv")} | {p.relative_to(out) for p in fetched.values()}
    manifest = read_manifest(out)
    assert set(manifest) == want
    assert {row["status"] for row in manifest.values()} == {"fetched"}
    assert {int(row["obs"]) for row in manifest.values()} == {1}
    assert all(int(row["size"]) == len(mast.archive.files[n]) for n, row in manifest.items())
    assert sorted(mast.downloads("GET")) == sorted(want)
    assert "summary: 8 fetched, 0 skipped, 0 failed" in result.stderr
    # MAST was asked for the products of observation 1 only, not of the whole program
    asked = {i for m, path, req in mast.requests if path == "invoke" and req["service"] == "Mast.Caom.Products"
             for i in req["params"]["obsid"].split(",")}
    obs_ids = {o["obsid"]: o["obs_id"] for o in mast.archive.observations}
    assert asked and {download.observation_number(obs_ids[i]) for i in asked} == {1}


@pytest.mark.parametrize("args, subgroup, observations, filters", [
    (["all"], "UNCAL", None, SEVEN),
    (["all", "--product-type", "i2d"], "I2D", None, SEVEN),
    (["2", "--product-type", "CAL", "--filters", "F200W,F444W"], "CAL", [2, 52], ("F200W", "F444W")),
])
def test_dry_run_lists_selection_and_downloads_nothing(mast, tmp_path, args, subgroup, observations, filters):
    result = run_cli(mast, tmp_path, *args, "--dry-run", "--download-dir", "dl")
    assert result.returncode == 0, result.stderr
    want = expected_files(mast.archive, subgroup, observations, filters)
    lines = result.stdout.strip().splitlines()
    listed = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert set(listed) == want
    for name, fields in listed.items():
        assert int(fields[3]) == len(mast.archive.files[name]) and fields[4] == "fetch"
    assert lines[-1].startswith(f"would fetch {len(want)} of {len(want)} files")
    assert mast.downloads("GET") == [] and mast.downloads("HEAD") == []
    assert not (tmp_path / "dl").exists()


def test_all_sort_files_places_each_file_by_observtn(mast, tmp_path):
    result = run_cli(mast, tmp_path, "all", "--sort_files", "--download-dir", "dl")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "dl"
    want = expected_files(mast.archive, "UNCAL")
    files = {rel: p for rel, p in files_under(out).items() if rel.name != "manifest.ecsv"}
    assert {rel.name for rel in files} == want and len(files) == len(want)
    assert not (out / "mastDownload").exists()
    for rel, path in files.items():
        observation = int(fits.getval(path, "OBSERVTN"))
        assert rel.parts == (SORTED_DIR[observation], rel.name)
    assert {rel.parts[0] for rel in files} == set(SORTED_DIR.values())
    manifest = read_manifest(out)
    assert {Path(row["file"]) for row in manifest.values()} == set(files)


def test_rerun_skips_complete_files_and_refetches_damaged_ones(mast, tmp_path):
    first = run_cli(mast, tmp_path, "3", "--cleanup", "--download-dir", "dl")
    assert first.returncode == 0, first.stderr
    out = tmp_path / "dl"
    names = sorted(expected_files(mast.archive, "UNCAL", [3]))
    assert sorted(p.name for p in out.glob("*_uncal.fits")) == names
    assert not (out / "mastDownload").exists()
    damaged, removed = out / names[0], out / names[1]
    damaged.write_bytes(damaged.read_bytes()[:1000])
    removed.unlink()

    mast.reset()
    second = run_cli(mast, tmp_path, "3", "--cleanup", "--download-dir", "dl")
    assert second.returncode == 0, second.stderr
    assert sorted(mast.downloads("GET")) == [names[0], names[1]]
    manifest = read_manifest(out)
    assert {n: row["status"] for n, row in manifest.items()} == {
        n: ("fetched" if n in names[:2] else "skipped") for n in names}
    assert damaged.read_bytes() == mast.archive.files[names[0]]
    assert f"summary: 2 fetched, {len(names) - 2} skipped, 0 failed" in second.stderr


@pytest.mark.parametrize("times, returncode, gets", [(1, 0, 2), (None, 1, 3)])
def test_cut_off_transfer_never_leaves_a_partial_file(mast, tmp_path, times, returncode, gets):
    names = sorted(expected_files(mast.archive, "UNCAL", [4]))
    victim = names[0]
    mast.set_fault(victim, "truncate", times)
    result = run_cli(mast, tmp_path, "6", "--download-dir", "dl", "--retries", "2", "--retry-delay", "0")
    assert result.returncode == returncode, result.stderr
    assert mast.downloads("GET").count(victim) == gets
    out = tmp_path / "dl"
    on_disk = {p.name: p for p in out.rglob("*.fits")}
    assert not [n for n in on_disk if n not in names]          # no temporary leftovers
    manifest = read_manifest(out)
    if returncode == 0:
        assert on_disk[victim].read_bytes() == mast.archive.files[victim]
        assert manifest[victim]["status"] == "fetched"
    else:
        assert victim not in on_disk
        assert manifest[victim]["status"] == "failed"
        assert result.stderr.strip().splitlines()[-1].startswith(f"ERROR: 1 of {len(names)} files failed")
    assert set(on_disk) | ({victim} if returncode else set()) == set(names)


@pytest.mark.parametrize("status, heads", [(500, 3), (404, 1)])
def test_http_error_on_one_product_is_reported_and_the_rest_complete(mast, tmp_path, status, heads):
    names = sorted(expected_files(mast.archive, "UNCAL", [2, 52]))
    victim = names[-1]
    mast.set_fault(victim, status)
    result = run_cli(mast, tmp_path, "2", "--download-dir", "dl", "--retries", "2", "--retry-delay", "0",
                     "--cleanup")
    assert result.returncode == 1
    assert mast.downloads("HEAD").count(victim) == heads        # 5xx retried, 4xx not
    out = tmp_path / "dl"
    assert sorted(p.name for p in out.glob("*.fits")) == names[:-1]
    for name in names[:-1]:
        assert (out / name).read_bytes() == mast.archive.files[name]
    manifest = read_manifest(out)
    assert manifest[victim]["status"] == "failed" and str(status) in manifest[victim]["message"]
    assert sum(row["status"] == "fetched" for row in manifest.values()) == len(names) - 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ERROR: 1 of {len(names)} files failed ({victim})")
    assert f"summary: {len(names) - 1} fetched, 0 skipped, 1 failed" in result.stderr


@pytest.mark.parametrize("times, returncode", [(1, 0), (None, 1)])
def test_failing_mast_query_is_retried_then_one_line_error(mast, tmp_path, times, returncode):
    mast.set_fault("invoke", 503, times)
    result = run_cli(mast, tmp_path, "3", "--dry-run", "--retries", "1", "--retry-delay", "0")
    assert result.returncode == returncode
    queries = [req for m, path, req in mast.requests if path == "invoke" and req["page"] == 1]
    if returncode == 0:
        assert len(queries) == 3                     # observation query twice, product list once
        assert set(result.stdout.split()) >= expected_files(mast.archive, "UNCAL", [3])
    else:
        assert len(queries) == 2                     # first try and one retry, then give up
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"ERROR: MAST query for observation 3 failed at {mast.url}: 503")
        assert result.stdout == ""


@pytest.mark.parametrize("observation, group", [(1, "nircam1"), (2, "nircam2"), (52, "nircam2b"),
                                                (4, "nircam6"), (69, "nircam9"), (77, None)])
def test_pointing_group_names_a_pointings_later_observations_with_a_letter(observation, group):
    assert download.pointing_group(observation, download.load_pointings()) == group
