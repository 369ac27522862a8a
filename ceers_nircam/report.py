"""Validation reports: measured numbers against their pass thresholds, with figures.

A report is a list of sections, each with checks (a measured value and the
range it must fall in) and PNG figures. :func:`write_report` writes
``report.html`` (a static page a browser shows as is) and ``summary.json``
(every number, its threshold and whether it passed), so people and programs
read the same verdicts.
"""

import dataclasses
import html
import json
import math
import os

from .fitsio import atomic_path


@dataclasses.dataclass
class Check:
    """One measured number and the range it must fall in (either end may be open)."""

    name: str
    value: float
    low: float | None = None
    high: float | None = None
    unit: str = ""
    note: str = ""

    @property
    def passed(self):
        if self.value is None or not math.isfinite(self.value):
            return False
        return ((self.low is None or self.value >= self.low)
                and (self.high is None or self.value <= self.high))

    @property
    def threshold(self):
        unit = f" {self.unit}" if self.unit else ""
        if self.low is not None and self.high is not None:
            return f"{self.low:g} to {self.high:g}{unit}"
        if self.low is not None:
            return f">= {self.low:g}{unit}"
        if self.high is not None:
            return f"<= {self.high:g}{unit}"
        return "(reported)"

    def as_dict(self):
        return {"name": self.name, "value": self.value, "low": self.low, "high": self.high,
                "unit": self.unit, "threshold": self.threshold, "passed": self.passed,
                "note": self.note}


@dataclasses.dataclass
class Section:
    """A part of the report: a heading, a paragraph, its checks and its figures."""

    title: str
    text: str = ""
    checks: list = dataclasses.field(default_factory=list)
    figures: list = dataclasses.field(default_factory=list)  # (path relative to the report, caption)

    @property
    def passed(self):
        return all(c.passed for c in self.checks)


def summary(title, sections):
    """The report's content as plain data (what ``summary.json`` holds)."""
    return {"title": title,
            "passed": all(s.passed for s in sections),
            "sections": [{"title": s.title, "passed": s.passed,
                          "checks": [c.as_dict() for c in s.checks],
                          "figures": [{"path": p, "caption": c} for p, c in s.figures]}
                         for s in sections]}


def _format(value):
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def _section_html(index, section):
    esc = html.escape
    out = [f'<section id="section-{index}" data-passed="{str(section.passed).lower()}">',
           f"<h2>{esc(section.title)} "
           f'<span class="{"pass" if section.passed else "fail"}">'
           f'{"PASS" if section.passed else "FAIL"}</span></h2>']
    if section.text:
        out.append(f"<p>{esc(section.text)}</p>")
    if section.checks:
        out.append("<table><tr><th>check</th><th>measured</th><th>threshold</th>"
                   "<th>result</th><th>note</th></tr>")
        for c in section.checks:
            verdict = "pass" if c.passed else "fail"
            out.append(f'<tr class="check" data-check="{esc(c.name)}" data-passed="{str(c.passed).lower()}">'
                       f"<td>{esc(c.name)}</td><td>{_format(c.value)} {esc(c.unit)}</td>"
                       f"<td>{esc(c.threshold)}</td><td class=\"{verdict}\">{verdict.upper()}</td>"
                       f"<td>{esc(c.note)}</td></tr>")
        out.append("</table>")
    for path, caption in section.figures:
        out.append(f'<figure><img src="{esc(path)}" alt="{esc(caption)}">'
                   f"<figcaption>{esc(caption)}</figcaption></figure>")
    out.append("</section>")
    return "\n".join(out)


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 75em; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
.pass { color: #17692e; font-weight: bold; }
.fail { color: #b3171d; font-weight: bold; }
figure { display: inline-block; margin: 0.5em; max-width: 48%; vertical-align: top; }
figure img { max-width: 100%; }
figcaption { font-size: 0.9em; }
"""


def write_report(outdir, title, sections, intro=""):
    """Write ``report.html`` and ``summary.json`` in ``outdir``; return their paths.

    Figure paths in the sections are relative to ``outdir``.
    """
    os.makedirs(outdir, exist_ok=True)
    data = summary(title, sections)
    verdict = "PASS" if data["passed"] else "FAIL"
    body = "\n".join(_section_html(i, s) for i, s in enumerate(sections))
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
            f'<body data-passed="{str(data["passed"]).lower()}">\n'
            f'<h1>{html.escape(title)} <span class="{verdict.lower()}">{verdict}</span></h1>\n'
            f"<p>{html.escape(intro)}</p>\n{body}\n</body></html>\n")
    html_path = os.path.join(outdir, "report.html")
    json_path = os.path.join(outdir, "summary.json")
    with atomic_path(json_path) as tmp, open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
    with atomic_path(html_path) as tmp, open(tmp, "w") as fh:
        fh.write(page)
    return html_path, json_path
