"""The demo, reduced (NRCA3 and NRCALONG in F150W and F277W), run as a user runs it.

It is first stopped with Ctrl-C in the middle of Detector1 (nothing half-written
may remain), then resumed to the end, then run once more (nothing is redone and
the report is reused). Its validation report measures every step against the
truth, and shows in a real browser the verdicts summary.json holds; alignment,
pedestals, the variance rescaling, and the mosaics' photometry and positions
of truth sources must meet their thresholds.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from astropy.io import fits

from browser import browser, image_status, open_page  # noqa: F401
from scratch import shared_dir

pytestmark = [pytest.mark.pipeline, pytest.mark.browser]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _demo(outdir, log_path):
    return subprocess.Popen([sys.executable, "-m", "ceers_nircam.demo", str(outdir), "--reduced"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))


def _partial_files(outdir):
    return [p for p in glob.glob(os.path.join(outdir, "**", ".*"), recursive=True)
            if ".part" in os.path.basename(p) or os.path.basename(p).startswith(".strun.")]


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    out = shared_dir(tmp_path_factory, "demo", __file__) / "demo_output"
    logs = out.parent

    # Ctrl-C while Detector1 runs on the first exposures.
    proc = _demo(out, logs / "first.log")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        if "detector1_and_snowballs: 0/" in (logs / "first.log").read_text():
            time.sleep(20)
            break
        time.sleep(2)
    assert proc.poll() is None, (logs / "first.log").read_text()[-2000:]
    proc.send_signal(signal.SIGINT)
    try:
        interrupted = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    partial = _partial_files(out)

    t0 = time.monotonic()
    resumed = _demo(out, logs / "resumed.log")
    resumed.wait(timeout=3600)
    t1 = time.monotonic()
    again = _demo(out, logs / "again.log")
    again.wait(timeout=600)
    return {"dir": out, "interrupted": interrupted, "partial": partial,
            "resumed": resumed.returncode, "again": again.returncode,
            "logs": {n: (logs / f"{n}.log").read_text() for n in ("first", "resumed", "again")},
            "minutes": (t1 - t0) / 60.0}


def test_ctrl_c_leaves_nothing_half_written(demo):
    assert demo["interrupted"] == 130
    assert "ERROR: interrupted" in demo["logs"]["first"]
    assert demo["partial"] == []
    for path in glob.glob(os.path.join(demo["dir"], "calibrated", "*.fits")):
        with fits.open(path) as hdul:
            hdul.verify("exception")


def test_resumed_run_completes_and_a_second_run_redoes_nothing(demo):
    assert demo["resumed"] == 0, demo["logs"]["resumed"][-3000:]
    assert demo["again"] == 0, demo["logs"]["again"][-3000:]
    again = demo["logs"]["again"]
    assert "reusing its measurements" in again
    finals = re.findall(r" - (\w+): (\d+)/(\d+) done(?: \((\d+) skipped\))?, 0 failed, 0 running, "
                        r"elapsed [0-9:]+, finished", again)
    stages = {stage for stage, *_ in finals}
    assert {"simulate", "detector1_and_snowballs", "image2", "astrometry", "make_mosaics",
            "mosaic_background"} <= stages
    assert all(done == total == (skipped or "-") for _, done, total, skipped in finals), finals
    print(f"\nresumed demo took {demo['minutes']:.1f} min")


def _summary(demo):
    with open(os.path.join(demo["dir"], "report", "summary.json")) as fh:
        return json.load(fh)


def _checks(summary, section):
    found = [s for s in summary["sections"] if s["title"].startswith(section)]
    assert len(found) == 1, section
    return found[0]["checks"]


def test_report_measures_every_step(demo):
    summary = _summary(demo)
    titles = [s["title"] for s in summary["sections"]]
    for topic in ("Snowballs", "Wisps", "1/f", "Astrometry", "Sky pedestal", "Read-noise variance",
                  "Mosaics"):
        assert any(t.startswith(topic) for t in titles), topic
    checks = [c for s in summary["sections"] for c in s["checks"]]
    assert len(checks) > 40
    assert all(c["threshold"] != "(reported)" for c in checks)
    assert summary["passed"] == all(c["passed"] for c in checks)


@pytest.mark.parametrize("section", ["Astrometry", "Sky pedestal", "Read-noise variance"])
def test_alignment_pedestal_and_variance_meet_their_thresholds(demo, section):
    failed = [(c["name"], c["value"], c["threshold"]) for c in _checks(_summary(demo), section)
              if not c["passed"]]
    assert failed == []


def test_mosaic_photometry_and_positions_agree_with_truth(demo):
    checks = {c["name"]: c for c in _checks(_summary(demo), "Mosaics")}
    for filt in ("F150W", "F277W"):
        assert checks[f"{filt}: isolated truth sources measured"]["value"] >= 20
        assert checks[f"{filt}: median position offset"]["value"] <= 5.0  # mas
        ratio = [c for n, c in checks.items() if n.startswith(f"{filt}: median aperture flux")]
        assert len(ratio) == 1 and abs(ratio[0]["value"] - 1) <= 0.02
    assert checks["distinct pixel grids among the filter mosaics"]["value"] == 1


def test_report_page_shows_the_same_verdicts_and_every_figure(demo, browser):  # noqa: F811
    report = os.path.join(demo["dir"], "report", "report.html")
    summary = _summary(demo)
    open_page(browser, report)
    images = image_status(browser)
    assert len(images) >= 10 and all(ok for _, ok in images), images
    rows = browser.execute_script(
        "return [...document.querySelectorAll('tr.check')].map(r => [r.dataset.check,"
        " r.dataset.passed]);")
    assert rows == [[c["name"], str(c["passed"]).lower()]
                    for s in summary["sections"] for c in s["checks"]]
    assert browser.execute_script("return document.body.dataset.passed") == str(summary["passed"]).lower()
