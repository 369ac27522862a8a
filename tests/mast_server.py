"""A stand-in for the MAST services that astroquery.mast uses, served on loopback.

It answers, in MAST's JSON shapes, the requests astroquery makes for
``Observations.query_criteria``, ``get_product_list`` and ``download_file``:

- ``POST /portal/Mashup/Mashup.asmx/columnsconfig`` (``colConfigId=...``): the
  column configuration astroquery builds its filter set from;
- ``POST /api/v0/invoke`` (``request=<json>``): services ``Mast.Caom.Filtered``
  (observations matching a filter set, LIKE wildcards in ``freeText``) and
  ``Mast.Caom.Products`` (products of a list of obsids), paged by
  ``pagesize``/``page``;
- ``HEAD``/``GET /api/v0.1/Download/file?uri=mast:JWST/product/<file>``: the
  file itself, a small FITS file with a JWST-like primary header.

Faults can be set per file (an HTTP status, or a transfer cut off half way
with a Content-Length larger than what is sent), and every request is logged
so tests can tell what was asked for.
"""

import io
import json
import math
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
from astropy.io import fits

OBSERVATION_FIELDS = (
    ("obsid", "string"), ("obs_collection", "string"), ("dataproduct_type", "string"),
    ("instrument_name", "string"), ("filters", "string"), ("target_name", "string"),
    ("obs_id", "string"), ("proposal_id", "string"), ("calib_level", "int"),
)
PRODUCT_FIELDS = (
    ("obsID", "string"), ("obs_collection", "string"), ("dataproduct_type", "string"),
    ("obs_id", "string"), ("description", "string"), ("type", "string"), ("dataURI", "string"),
    ("productType", "string"), ("productGroupDescription", "string"),
    ("productSubGroupDescription", "string"), ("productFilename", "string"), ("size", "int"),
    ("parent_obsid", "string"), ("proposal_id", "string"), ("calib_level", "int"), ("filters", "string"),
)
COLUMN_CONFIGS = {
    "Mast.Caom.Cone": OBSERVATION_FIELDS,
    "Mast.Caom.Products": PRODUCT_FIELDS,
}
SEPARATED = {"filters": ";", "obs_collection": ";"}


def column_config(fields):
    """A MAST columnsconfig answer for the given (name, type) fields."""
    config = {"_selected_": {"text": "selected", "type": "boolean", "hidden": True}}
    for name, kind in fields:
        entry = {"text": name, "vot.datatype": "char" if kind == "string" else kind}
        if name in SEPARATED:
            entry["separator"] = SEPARATED[name]
        config[name] = entry
    return config


def fits_bytes(program, observation, instrument, filt, detector, filename):
    """A small valid FITS file: primary header as JWST writes it, and an 8x8 SCI image."""
    primary = fits.PrimaryHDU()
    header = primary.header
    header["TELESCOP"] = "JWST"
    header["INSTRUME"] = instrument.split("/")[0]
    header["PROGRAM"] = f"{program:05d}"
    header["OBSERVTN"] = f"{observation:03d}"
    header["VISIT"] = "001"
    header["FILTER"] = filt
    header["PUPIL"] = "CLEAR"
    header["DETECTOR"] = detector.upper()
    header["FILENAME"] = filename
    seed = sum(filename.encode())
    sci = fits.ImageHDU(np.arange(64, dtype=np.float32).reshape(8, 8) + seed, name="SCI")
    buffer = io.BytesIO()
    fits.HDUList([primary, sci]).writeto(buffer)
    return buffer.getvalue()


@dataclass
class Archive:
    """Observations, the products listed under each obsid, and file contents."""

    observations: list = field(default_factory=list)
    products: dict = field(default_factory=dict)      # obsid -> list of product rows
    files: dict = field(default_factory=dict)         # file name -> bytes
    _next_obsid: int = 87600000
    _exposures: dict = field(default_factory=dict)   # (program, observation) -> exposures so far

    def _obsid(self):
        self._next_obsid += 1
        return str(self._next_obsid)

    def add_visit(self, program, observation, instrument, filt, exposures, target="CEERS-EGS"):
        """Add one level-3 observation (per filter) and its exposures, as MAST lists JWST imaging.

        Each exposure is also an observation of its own (calibration level 2)
        whose uncal/rate/cal files are listed under both obsids, so a query of
        the whole program returns every file twice, as MAST does.
        """
        short = instrument.split("/")[0].lower()
        long_wave = filt in ("F277W", "F356W", "F410M", "F444W")
        detector = {"miri": "mirimage", "niriss": "nis"}.get(short, "nrcalong" if long_wave else "nrca1")
        level3 = dict(obsid=self._obsid(), obs_collection="JWST", dataproduct_type="image",
                      instrument_name=instrument, filters=filt, target_name=target,
                      obs_id=f"jw{program:05d}-o{observation:03d}_t001_{short}_clear-{filt.lower()}",
                      proposal_id=str(program), calib_level=3)
        self.observations.append(level3)
        self.products[level3["obsid"]] = []
        for _ in range(exposures):
            number = self._exposures.get((program, observation), 0) + 1
            self._exposures[(program, observation)] = number
            exposure = f"jw{program:05d}{observation:03d}001_02101_{number:05d}_{detector}"
            level2 = dict(level3, obsid=self._obsid(), obs_id=exposure, calib_level=2)
            self.observations.append(level2)
            self.products[level2["obsid"]] = []
            for kind in ("uncal", "rate", "cal"):
                name = f"{exposure}_{kind}.fits"
                row = self._product(level3, exposure, name, kind.upper(), "SCIENCE", program, observation,
                                    instrument, filt, detector)
                self.products[level3["obsid"]].append(row)
                self.products[level2["obsid"]].append(dict(row, obsID=level2["obsid"]))
        mosaic = f"{level3['obs_id']}_i2d"
        self.products[level3["obsid"]] += [
            self._product(level3, level3["obs_id"], f"{mosaic}.fits", "I2D", "SCIENCE", program,
                          observation, instrument, filt, detector),
            # a preview and an association: same product group, not science files
            self._product(level3, level3["obs_id"], f"{mosaic}.jpg", "I2D", "PREVIEW", program,
                          observation, instrument, filt, detector, content=b"\xff\xd8 preview"),
            self._product(level3, level3["obs_id"], f"{level3['obs_id']}_asn.json", "ASN", "INFO",
                          program, observation, instrument, filt, detector, content=b"{}"),
        ]

    def _product(self, parent, obs_id, name, subgroup, product_type, program, observation, instrument,
                 filt, detector, content=None):
        if content is None:
            content = fits_bytes(program, observation, instrument, filt, detector, name)
        self.files[name] = content
        return dict(obsID=parent["obsid"], obs_collection="JWST", dataproduct_type="image", obs_id=obs_id,
                    description=f"{subgroup} file", type="S", dataURI=f"mast:JWST/product/{name}",
                    productType=product_type, productGroupDescription="Minimum Recommended Products",
                    productSubGroupDescription=subgroup, productFilename=name, size=len(content),
                    parent_obsid=parent["obsid"], proposal_id=str(program), calib_level=parent["calib_level"],
                    filters=filt)


def _like(pattern, value):
    """SQL LIKE (``%`` any run, ``_`` one character), case-insensitive, as MAST's freeText."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.IGNORECASE) is not None


def _matches(row, criterion):
    value = str(row.get(criterion["paramName"], ""))
    separator = criterion.get("separator")
    parts = [p.strip().lower() for p in value.split(separator)] if separator else [value.lower()]
    wanted = {str(v).lower() for v in criterion.get("values", [])}
    if wanted & set(parts):
        return True
    free = criterion.get("freeText")
    return bool(free) and _like(free, value)


class MastSimulator:
    """Serve an :class:`Archive` over HTTP on 127.0.0.1 with an ephemeral port."""

    def __init__(self, archive):
        self.archive = archive
        self.faults = {}       # file name or "invoke" -> [kind, remaining]; kind an int status or "truncate"
        self.requests = []     # (method, path, detail)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self):
        """Forget faults and the request log."""
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def set_fault(self, filename, kind, times=None):
        """Make ``filename`` (or ``"invoke"``, the query service) fail.

        ``kind`` is an HTTP status or ``"truncate"``; ``times`` None means always.
        """
        with self._lock:
            self.faults[filename] = [kind, times]

    def downloads(self, method="GET"):
        """File names requested from the download service with ``method``."""
        with self._lock:
            return [d for m, p, d in self.requests if m == method and p == "download"]

    def _log(self, method, path, detail):
        with self._lock:
            self.requests.append((method, path, detail))

    def _take_fault(self, name, method):
        """The fault to apply to this request of ``name``, using up one of its repeats."""
        with self._lock:
            fault = self.faults.get(name)
            if fault is None:
                return None
            kind, remaining = fault
            # a status fault answers the first request (HEAD of a download, POST of a query);
            # a cut-off hits the GET that carries the file
            applies = (method == "GET") if kind == "truncate" else method in ("HEAD", "POST")
            if remaining == 0:
                return None
            if applies and remaining is not None:
                fault[1] = remaining - 1
            return kind

    # ------------------------------------------------------------------ answers

    def invoke(self, request):
        service = request.get("service")
        params = request.get("params", {})
        if service == "Mast.Caom.Filtered":
            rows = [r for r in self.archive.observations
                    if all(_matches(r, c) for c in params.get("filters", []))]
            fields = OBSERVATION_FIELDS
        elif service == "Mast.Caom.Products":
            rows = []
            for obsid in str(params.get("obsid", "")).split(","):
                rows += self.archive.products.get(obsid.strip(), [])
            fields = PRODUCT_FIELDS
        else:
            return {"status": "ERROR", "msg": f"unknown service {service}", "data": [], "fields": []}
        size = int(request.get("pagesize") or 50000)
        page = int(request.get("page") or 1)
        pages = max(1, math.ceil(len(rows) / size))
        return {"status": "COMPLETE", "msg": "",
                "fields": [{"name": n, "type": t} for n, t in fields],
                "data": rows[(page - 1) * size: page * size],
                "paging": {"page": page, "pageSize": size, "pagesFiltered": pages,
                           "rows": len(rows), "rowsFiltered": len(rows), "rowsTotal": len(rows)}}

    def _handler_class(self):
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status, body, content_type="application/json", length=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _form(self):
                length = int(self.headers.get("Content-Length", 0))
                return parse_qs(self.rfile.read(length).decode())

            def do_POST(self):
                path = urlsplit(self.path).path
                form = self._form()
                if path.endswith("/columnsconfig"):
                    name = form.get("colConfigId", [""])[0]
                    sim._log("POST", "columnsconfig", name)
                    answer = column_config(COLUMN_CONFIGS.get(name, ()))
                elif path == "/api/v0/invoke":
                    request = json.loads(form["request"][0])
                    sim._log("POST", "invoke", request)
                    fault = sim._take_fault("invoke", "POST")
                    if isinstance(fault, int):
                        self._send(fault, b"{}")
                        return
                    answer = sim.invoke(request)
                else:
                    self._send(404, b"{}")
                    return
                self._send(200, json.dumps(answer).encode())

            def _download(self):
                split = urlsplit(self.path)
                if split.path != "/api/v0.1/Download/file":
                    self._send(404, b"not found", "text/plain")
                    return
                uri = parse_qs(split.query).get("uri", [""])[0]
                name = uri.rsplit("/", 1)[-1]
                sim._log(self.command, "download", name)
                content = sim.archive.files.get(name)
                if content is None:
                    self._send(404, b"no such file", "text/plain")
                    return
                fault = sim._take_fault(name, self.command)
                if isinstance(fault, int):
                    self._send(fault, b"simulated failure", "text/plain")
                elif fault == "truncate" and self.command == "GET":
                    # promise the whole file, send half of it, then hang up
                    self._send(200, content[: len(content) // 2], "application/octet-stream", len(content))
                    self.close_connection = True
                else:
                    self._send(200, content, "application/octet-stream")

            do_GET = _download
            do_HEAD = _download

        return Handler
