"""Validation reports render in a real browser, every figure loads, and the page's
verdicts are those of summary.json."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from ceers_nircam.report import Check, Section, write_report  # noqa: E402

from browser import browser, image_status, open_page  # noqa: E402,F401

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("value, low, high, passed", [
    (0.5, 0.3, 1.0, True), (0.2, 0.3, 1.0, False), (1.2, None, 1.5, True), (float("nan"), 0, 1, False),
    (3.0, 5.0, None, False), (1.0, None, None, True)])
def test_a_check_passes_only_inside_its_range(value, low, high, passed):
    assert Check("x", value, low, high).passed is passed


def _figure(path):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path)
    plt.close(fig)


def _report(tmp_path, missing_figure=False):
    (tmp_path / "figures").mkdir()
    _figure(tmp_path / "figures" / "a.png")
    if not missing_figure:
        _figure(tmp_path / "figures" / "b.png")
    sections = [
        Section("Snowballs", "Coverage of injected snowballs.",
                [Check("core and halo flagged", 0.995, 0.99, None, note="from onset group"),
                 Check("false flags", 0.004, None, 0.005)], [("figures/a.png", "snowball cutout")]),
        Section("Mosaic photometry", "Isolated truth sources.",
                [Check("median flux ratio - 1", 0.031, -0.02, 0.02)], [("figures/b.png", "ratios")]),
    ]
    return write_report(str(tmp_path), "demo validation", sections, intro="test page")


def test_report_renders_with_every_figure_and_the_summary_verdicts(browser, tmp_path):
    html_path, json_path = _report(tmp_path)
    summary = json.loads(open(json_path).read())
    open_page(browser, html_path)
    images = image_status(browser)
    assert len(images) == 2 and all(ok for _, ok in images)
    rows = browser.execute_script(
        "return [...document.querySelectorAll('tr.check')].map(r => [r.dataset.check,"
        " r.dataset.passed, r.querySelector('td.pass, td.fail').textContent]);")
    expected = [(c["name"], c["passed"]) for s in summary["sections"] for c in s["checks"]]
    assert [(name, flag == "true") for name, flag, _ in rows] == expected
    assert [text for _, _, text in rows] == ["PASS", "PASS", "FAIL"]
    assert browser.execute_script("return document.body.dataset.passed") == "false"
    assert summary["passed"] is False


def test_a_missing_figure_is_seen_by_the_browser(browser, tmp_path):
    html_path, _ = _report(tmp_path, missing_figure=True)
    open_page(browser, html_path)
    assert dict(image_status(browser)) == {"figures/a.png": True, "figures/b.png": False}
