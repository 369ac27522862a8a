"""Fourier-optics effective PSFs of a JWST-like telescope for the CEERS filters.

The pupil has 18 hexagonal segments with 7 mm gaps, the secondary mirror's
shadow (which falls inside the empty centre) and three struts; a fixed,
seeded wavefront error of 150 nm rms gives a Strehl ratio of 0.8 at 2 um
and a scattered halo. Monochromatic PSFs from matrix Fourier transforms are
summed across each filter's band, integrated over the detector pixel and
kept on a grid oversampled ``OVERSAMPLE`` times, so a point source at any
sub-pixel offset is drawn by interpolation (:class:`EffectivePSF`).

Values are shares of the total flux over the infinite plane: a stamp holds
the light it really contains (at least 99%) and is never renormalised. The
segment gaps alone send 0.7% of the light tens of arcsec away, so 99%
needs stamps of 4-7 arcsec (SW) and 10-15 arcsec (LW) half-width. Image
axes are the pupil's: x across, y along V3 (the vertical strut). Each
filter is computed once and cached as a FITS file.
"""

import functools
import hashlib
import json
import os

import numpy as np
from astropy.io import fits
from scipy import fft, ndimage

from ..cli import CeersError, get_logger
from ..fitsio import write_hdulist
from ..nircam import PIXEL_SCALE, filter_channel

log = get_logger("offline.psf")

RAD_TO_ARCSEC = 180.0 / np.pi * 3600.0

# Approximate top-hat bandpasses (um).
BANDPASS = {"F115W": (1.013, 1.282), "F150W": (1.331, 1.668), "F200W": (1.755, 2.226),
            "F277W": (2.423, 3.132), "F356W": (3.135, 3.981), "F410M": (3.866, 4.302),
            "F444W": (3.881, 4.982)}

# Pupil geometry (metres); x is horizontal on the detector, y along V3.
SEGMENT_FLAT = 1.32  # flat-to-flat width of a segment
SEGMENT_GAP = 0.007
SECONDARY_DIAMETER = 0.74
STRUT_WIDTH = 0.03
STRUT_ANGLES = (90.0, 240.0, 300.0)  # deg from +x: one up along V3, two lower ones
PUPIL_EXTENT = 6.7  # side of the square the pupil is sampled over

# Wavefront error: rms shares of the three parts before scaling the total.
WFE_RMS = 150e-9  # m, Strehl exp(-(2 pi rms / lambda)^2) ~ 0.8 at 2 um
WFE_SHARES = {"low_order": 90e-9, "segments": 75e-9, "mid_high": 70e-9}
WFE_PSD = {"f_min": 0.4, "f_knee": 1.5, "slope": 3.5, "f_roll": 8.0, "f_max": 18.0}  # cycles/m
WFE_SEED = 20220621

OVERSAMPLE = 4  # ePSF samples per detector pixel
MIN_FRACTION = 0.99  # least share of the flux a stamp must hold
FIELD_PER_MICRON = 3.6  # arcsec of field half-width per um of the longest wavelength
ALIAS_MARGIN = 4.0  # period of the sampled-pupil PSF over the field half-width
SMOOTH_RADIUS = 40.0  # lambda/D out to which the band is sampled finely enough to blur speckle
STAMP_MARGIN = 3  # pixels of ePSF kept beyond the stamp, for shifts and the spline
MFT_OVERSAMPLE = 2  # the optical PSF is computed at twice the pixel rate: above Nyquist
CACHE_ENV = "CEERS_PSF_CACHE"
CACHE_FORMAT = "1"  # bump when the cache file layout or the algorithm changes
_REFERENCE_N = 512  # pupil grid on which the wavefront parts are scaled
_MODEL_PARAMETERS = ("BANDPASS", "SEGMENT_FLAT", "SEGMENT_GAP", "SECONDARY_DIAMETER",
                     "STRUT_WIDTH", "STRUT_ANGLES", "PUPIL_EXTENT", "WFE_RMS", "WFE_SHARES",
                     "WFE_PSD", "WFE_SEED", "OVERSAMPLE", "MIN_FRACTION", "FIELD_PER_MICRON",
                     "ALIAS_MARGIN", "SMOOTH_RADIUS", "STAMP_MARGIN", "MFT_OVERSAMPLE",
                     "_REFERENCE_N")

_MEMO = {}  # (filter, cache directory) -> EffectivePSF


# ---------------------------------------------------------------- pupil ----

def segment_centres():
    """Centres (m) of the 18 segments: two hexagonal rings around the empty centre."""
    pitch = SEGMENT_FLAT + SEGMENT_GAP
    up = np.array([0.0, pitch])
    slant = pitch * np.array([np.cos(np.pi / 6), np.sin(np.pi / 6)])
    return np.array([q * up + r * slant for q in range(-2, 3) for r in range(-2, 3)
                     if max(abs(q), abs(r), abs(q + r)) <= 2 and (q, r) != (0, 0)])


def _grid(n):
    """Sample coordinates (m) of an n x n pupil grid, and the sample pitch."""
    delta = PUPIL_EXTENT / n
    return (np.arange(n) - (n - 1) / 2) * delta, delta


@functools.lru_cache(maxsize=4)
def pupil(n):
    """Transmission of the pupil on an n x n grid, with sub-sample edges (read-only).

    Each sample holds the open fraction of its area (edges ramp linearly over
    one sample), so gaps narrower than a sample keep their area.
    """
    c, delta = _grid(n)
    trans = np.zeros((n, n))
    # Flat-topped hexagons: edges normal to 90 and +-30 deg give the six spikes.
    normals = np.array([[0.0, 1.0], [np.cos(np.pi / 6), 0.5], [-np.cos(np.pi / 6), 0.5]])
    reach = SEGMENT_FLAT / np.sqrt(3) + delta
    for cx, cy in segment_centres():
        ys = slice(*np.searchsorted(c, [cy - reach, cy + reach]))
        xs = slice(*np.searchsorted(c, [cx - reach, cx + reach]))
        dx, dy = c[xs][None, :] - cx, c[ys][:, None] - cy
        reach_out = np.max([np.abs(nx * dx + ny * dy) for nx, ny in normals], axis=0)
        inside = SEGMENT_FLAT / 2 - reach_out
        trans[ys, xs] += np.clip(0.5 + inside / delta, 0.0, 1.0)
    x, y = c[None, :], c[:, None]
    trans *= np.clip(0.5 + (np.hypot(x, y) - SECONDARY_DIAMETER / 2) / delta, 0.0, 1.0)
    for angle in np.deg2rad(STRUT_ANGLES):
        along = x * np.cos(angle) + y * np.sin(angle)
        across = np.abs(y * np.cos(angle) - x * np.sin(angle))
        blocked = np.clip(0.5 + (STRUT_WIDTH / 2 - across) / delta, 0.0, 1.0) * (along > 0)
        trans *= 1.0 - blocked
    trans.setflags(write=False)
    return trans


# ------------------------------------------------------- wavefront error ----

def _wfe_terms():
    """Seeded random coefficients of the three wavefront-error parts, before scaling."""
    rng = np.random.default_rng(WFE_SEED)
    low = rng.normal(size=8) * np.array([1.0, 0.8, 0.8, 0.6, 0.6, 0.5, 0.5, 0.4])
    segments = rng.normal(size=(18, 3))  # piston, tip, tilt
    step = 1.0 / (2 * PUPIL_EXTENT)  # modes periodic over twice the pupil: no wrap
    freqs = np.arange(-WFE_PSD["f_max"], WFE_PSD["f_max"] + step / 2, step)
    fx, fy = np.meshgrid(freqs, freqs)
    f = np.hypot(fx, fy)
    # Polishing-like errors: a power spectrum flat below the knee, falling as f^-slope
    # above, rolled off smoothly so the halo has no edge.
    psd = ((1.0 + (f / WFE_PSD["f_knee"]) ** 2) ** (-WFE_PSD["slope"] / 2)
           * np.exp(-((f / WFE_PSD["f_roll"]) ** 2)))
    psd[(f < WFE_PSD["f_min"]) | (f > WFE_PSD["f_max"])] = 0.0
    ripple = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) * np.sqrt(psd)
    return low, segments, freqs, ripple


@functools.lru_cache(maxsize=4)
def _segment_map(n):
    """Index of the segment each sample belongs to (18 for the empty centre), and the centres."""
    c, _ = _grid(n)
    centres = np.vstack([segment_centres(), [[0.0, 0.0]]])
    which = np.zeros((n, n), dtype=int)
    nearest = np.full((n, n), np.inf)
    for i, (cx, cy) in enumerate(centres):  # the nearest centre is the hexagon's own
        dist2 = (c[None, :] - cx) ** 2 + (c[:, None] - cy) ** 2
        which[dist2 < nearest] = i
        nearest = np.minimum(nearest, dist2)
    which.setflags(write=False)
    return which, centres


def _wfe_parts(n):
    """The three wavefront-error parts (m, unit scale) on an n x n grid, with their slopes.

    Each part is a tuple (value, d/dx, d/dy); slopes inside segments only, as
    the steps between segments have no gradient.
    """
    low, seg, freqs, ripple = _wfe_terms()
    c, delta = _grid(n)
    x, y = c[None, :] / 3.3, c[:, None] / 3.3  # low orders over the circumscribed circle
    r2 = x * x + y * y
    shapes = [2 * r2 - 1, x * x - y * y, 2 * x * y, (3 * r2 - 2) * x, (3 * r2 - 2) * y,
              x**3 - 3 * x * y * y, 3 * x * x * y - y**3, 6 * r2 * r2 - 6 * r2 + 1]
    low_order = sum(a * s for a, s in zip(low, shapes))
    which, centres = _segment_map(n)
    ptt = np.vstack([seg, np.zeros(3)])[which] / np.array([1.0, SEGMENT_FLAT / 2, SEGMENT_FLAT / 2])
    xx, yy = np.broadcast_arrays(c[None, :], c[:, None])
    segments = (ptt[..., 0] + ptt[..., 1] * (xx - centres[which, 0])
                + ptt[..., 2] * (yy - centres[which, 1]))
    phase = np.exp(2j * np.pi * np.outer(c, freqs))
    mid_high = (phase @ ripple @ phase.T).real
    smooth = [(w, *np.gradient(w, delta, axis=(1, 0))) for w in (low_order, mid_high)]
    return [smooth[0], (segments, ptt[..., 1], ptt[..., 2]), smooth[1]]


def _centre_part(part, trans, stairs):
    """Remove piston, the mean slope, then the remaining least-squares tilt as segment pistons.

    The PSF's centroid follows the mean slope of the wavefront and its core the
    least-squares tilt; zeroing both keeps the core on the centroid. The
    residual tilt is taken out as a staircase of segment pistons, which has
    no slope.
    """
    c, _ = _grid(trans.shape[0])
    value, dx, dy = part
    weight = trans / trans.sum()
    value = value - (np.sum(weight * dx) * c[None, :] + np.sum(weight * dy) * c[:, None])
    basis = np.broadcast_arrays(np.ones(1), c[None, :], c[:, None])
    gram = np.array([[np.sum(weight * u * v) for v in basis] for u in basis])
    fit = np.linalg.solve(gram, [[np.sum(weight * u * v) for v in (value, *stairs)] for u in basis])
    # Staircase amounts whose tilts cancel the value's tilt.
    amounts = np.linalg.solve(fit[1:, 1:], fit[1:, 0])
    value = value - amounts[0] * stairs[0] - amounts[1] * stairs[1]
    return value - np.sum(weight * value)


def _centred_parts(n):
    """The wavefront-error parts on an n x n grid, centred, and the pupil."""
    trans = pupil(n)
    which, centres = _segment_map(n)
    stairs = (centres[which, 0], centres[which, 1])
    return [_centre_part(p, trans, stairs) for p in _wfe_parts(n)], trans


def _rms(wfe, trans):
    return np.sqrt(np.sum(trans * wfe**2) / np.sum(trans))


@functools.cache
def _wfe_scales():
    """Factors that bring each part to its share and the total to WFE_RMS.

    Found once on a fixed reference grid, so the wavefront is the same
    continuous function whatever grid a filter samples it on.
    """
    parts, trans = _centred_parts(_REFERENCE_N)
    shares = [WFE_SHARES[k] for k in ("low_order", "segments", "mid_high")]
    scales = np.array([s / _rms(p, trans) for s, p in zip(shares, parts)])
    total = _rms(sum(k * p for k, p in zip(scales, parts)), trans)
    return scales * WFE_RMS / total


def wavefront(n):
    """Wavefront error (m) on an n x n pupil grid, with no piston, mean slope or tilt."""
    parts, _ = _centred_parts(n)
    return sum(k * p for k, p in zip(_wfe_scales(), parts))


def strehl(wavelength_um, n=_REFERENCE_N):
    """Strehl ratio of the wavefront error at one wavelength (peak over unaberrated peak)."""
    trans = pupil(n)
    phase = np.exp(2j * np.pi * wavefront(n) / (wavelength_um * 1e-6))
    return abs(np.sum(trans * phase)) ** 2 / np.sum(trans) ** 2


# ------------------------------------------------------------- optics ----

def _mft(field, ycoords, xcoords, wavelength, step, half, dtype=np.complex64):
    """Far-field amplitude of a pupil field at angles k * step (rad), |k| <= half, on both axes.

    A matrix Fourier transform: the output grid is free, but the result is
    periodic with period wavelength / (pupil sample pitch), so the field must
    fit well inside. Single precision is ample for intensities (relative
    error ~1e-6 of the peak amplitude) and twice as fast.
    """
    def kernel(coords):  # rows exp(-2 pi i k step x / lambda), as powers of the k = 1 row
        base = np.exp(-2j * np.pi * step / wavelength * coords)
        rows = np.cumprod(np.vstack([np.ones_like(base), np.tile(base, (half, 1))]), axis=0)
        return np.vstack([rows[:0:-1].conj(), rows]).astype(dtype)
    area = (xcoords[1] - xcoords[0]) * (ycoords[1] - ycoords[0])
    return area * (kernel(ycoords) @ field.astype(dtype)) @ kernel(xcoords).T


def wavelengths(filt):
    """Wavelengths (m) and weights across a filter's top-hat band.

    Weights go as 1/lambda (photons from a flat f_nu source). Between two
    wavelengths, speckle and rings at SMOOTH_RADIUS lambda/D move by half
    their width, so they blur into smooth streaks there and inside.
    """
    lo, hi = (w * 1e-6 for w in BANDPASS[filt])
    n = max(5, int(np.ceil(2 * SMOOTH_RADIUS * (hi - lo) / ((lo + hi) / 2))))
    waves = lo + (np.arange(n) + 0.5) * (hi - lo) / n
    weights = 1.0 / waves
    return waves, weights / weights.sum()


def field_halfwidth(filt):
    """Half-width (arcsec) of the field computed for a filter."""
    return FIELD_PER_MICRON * BANDPASS[filt][1]


def pupil_samples(filt):
    """Pupil grid size that puts the aliases ALIAS_MARGIN field half-widths away."""
    period = ALIAS_MARGIN * field_halfwidth(filt) / RAD_TO_ARCSEC
    return int(np.ceil(PUPIL_EXTENT * period / (BANDPASS[filt][0] * 1e-6) / 2)) * 2


def optical_psf(filt):
    """Polychromatic PSF sampled MFT_OVERSAMPLE times per detector pixel.

    Each sample holds its share of the total flux: intensities are divided by
    the transmitted pupil area, which by Parseval is the PSF's integral over
    the infinite plane. Light scattered beyond the field is thus missing, as
    it is from a real stamp.
    """
    n = pupil_samples(filt)
    trans, wfe = pupil(n), wavefront(n)
    coords, delta = _grid(n)
    area = trans.sum() * delta**2
    rows, cols = np.flatnonzero(trans.any(axis=1)), np.flatnonzero(trans.any(axis=0))
    box = np.ix_(rows, cols)  # the opaque border adds nothing
    trans, opd = trans[box], wfe[box].astype(np.float32)  # phases of radians: single is ample
    step = PIXEL_SCALE[filter_channel(filt)] / MFT_OVERSAMPLE / RAD_TO_ARCSEC
    half = int(np.ceil(field_halfwidth(filt) / RAD_TO_ARCSEC / step))
    image = np.zeros((2 * half + 1, 2 * half + 1))
    for wave, weight in zip(*wavelengths(filt)):
        field = trans * np.exp(1j * (np.float32(2 * np.pi / wave) * opd))
        amplitude = _mft(field, coords[rows], coords[cols], wave, step, half)
        image += weight * step**2 / (wave**2 * area) * (amplitude.real**2 + amplitude.imag**2)
    return image


def _resample(image, integrate):
    """Fourier-interpolate an image sampled MFT_OVERSAMPLE times per pixel to OVERSAMPLE.

    The intensity is band-limited (the pupil autocorrelation) and sampled
    above Nyquist, so zero-padding its spectrum is exact; with ``integrate``
    the spectrum is also multiplied by the pixel's sinc, which integrates
    the PSF over a detector pixel (the effective PSF, flux per pixel).
    """
    n = image.shape[0]
    zoom = OVERSAMPLE // MFT_OVERSAMPLE
    freq = fft.fftfreq(n)  # cycles per input sample
    spectrum = fft.rfft2(fft.ifftshift(image))
    if integrate:
        box = np.sinc(MFT_OVERSAMPLE * freq)
        spectrum *= box[:, None] * box[None, : spectrum.shape[1]] * OVERSAMPLE**2
    padded = np.zeros((zoom * n, zoom * n // 2 + 1), complex)
    rows = np.round(freq * n).astype(int) % (zoom * n)
    padded[rows, : spectrum.shape[1]] = spectrum
    out = fft.fftshift(fft.irfft2(padded, s=(zoom * n, zoom * n)))
    half = (n // 2) * zoom  # keep the odd, centred grid
    centre = zoom * n // 2
    return out[centre - half:centre + half + 1, centre - half:centre + half + 1]


def _halfsize(epsf):
    """Smallest stamp half-size (pixels) whose one-pixel-smaller stamp holds MIN_FRACTION.

    The extra pixel keeps the share above MIN_FRACTION for any sub-pixel offset.
    """
    mid = epsf.shape[0] // 2
    lattice = epsf[mid % OVERSAMPLE::OVERSAMPLE, mid % OVERSAMPLE::OVERSAMPLE]  # pixel centres
    pix = np.arange(lattice.shape[0]) - lattice.shape[0] // 2
    ring = np.maximum(np.abs(pix)[:, None], np.abs(pix)[None, :])
    enclosed = np.cumsum(np.bincount(ring.ravel(), lattice.ravel()))
    usable = lattice.shape[0] // 2 - STAMP_MARGIN
    if enclosed[usable - 1] < MIN_FRACTION:
        raise RuntimeError(f"PSF field too small: {enclosed[usable - 1]:.4f} of the flux "
                           f"within {usable - 1} pixels; raise FIELD_PER_MICRON")
    return int(np.argmax(enclosed >= MIN_FRACTION)) + 1


def _fwhm(optical, scale):
    """FWHM (arcsec) as the diameter of the circle with the area above half maximum."""
    mid = optical.shape[0] // 2
    half = int(np.ceil(0.4 / scale))  # samples; 0.4 arcsec clears every core
    cut = optical[mid - 2 * half:mid + 2 * half + 1, mid - 2 * half:mid + 2 * half + 1]
    fine = np.arange(-half, half + 1e-9, 1.0 / 8) + 2 * half
    rows, cols = np.meshgrid(fine, fine, indexing="ij")
    core = ndimage.map_coordinates(cut, [rows, cols], order=3)
    area = np.count_nonzero(core >= core.max() / 2) * (scale / 8) ** 2
    return 2.0 * np.sqrt(area / np.pi)


def _encircled(optical, scale):
    """Encircled energy at radii 0, 1, 2... samples, out to the field's inscribed circle."""
    mid = optical.shape[0] // 2
    offsets = np.arange(optical.shape[0]) - mid
    radius = np.hypot(offsets[:, None], offsets[None, :])
    ring = np.ceil(radius - 1e-9).astype(int)
    energy = np.cumsum(np.bincount(ring.ravel(), optical.ravel()))[: mid + 1]
    return np.arange(mid + 1) * scale, energy


# -------------------------------------------------------- effective PSF ----

class EffectivePSF:
    """The pixel-integrated PSF of one filter, drawn at any sub-pixel offset.

    Values are shares of the total flux of a unit point source: a stamp holds
    ``fraction`` of it (never renormalised). The centre of a source is the
    centroid of its stamp; ``centre`` is that centroid's offset (pixels) on
    the ePSF grid, applied when drawing.
    """

    def __init__(self, filt, data, halfsize, centre, fwhm, ee_radius, ee):
        self.filter = filt
        self.oversample = OVERSAMPLE
        self.pixel_scale = PIXEL_SCALE[filter_channel(filt)]
        self.halfsize = int(halfsize)
        self.data = np.asarray(data, dtype=np.float32)  # float32 keeps 1e-7: ample, half the memory
        self.centre = (float(centre[0]), float(centre[1]))
        self._coeffs = ndimage.spline_filter(self.data, order=3, mode="mirror", output=np.float32)
        self._fwhm = float(fwhm)
        self._ee = (np.asarray(ee_radius, dtype=float), np.asarray(ee, dtype=float))
        self.fraction = float(self.kernel().sum())

    def stamp(self, dx, dy):
        """Detector-pixel image of a unit-flux source centred (dx, dy) pixels from the central pixel.

        Offsets are within half a pixel; the image is (2 halfsize + 1) square.
        """
        if not (abs(dx) <= 0.5 + 1e-9 and abs(dy) <= 0.5 + 1e-9):
            raise CeersError(f"sub-pixel offset ({dx}, {dy}) outside [-0.5, 0.5]")
        # Stamp pixels fall every OVERSAMPLE samples from one start, so all share the same
        # cubic B-spline weights: the spline is evaluated with strided slices.
        size = 2 * self.halfsize + 1
        mid = (self.data.shape[0] - 1) / 2
        start = mid + (-self.halfsize - np.array([dy, dx]) + self.centre[::-1]) * self.oversample
        first = np.floor(start).astype(int) - 1
        (wy, wx) = (_bspline_weights(t) for t in start - first - 1)
        span = slice(0, self.oversample * (size - 1) + 1, self.oversample)
        rows = sum(w * self._coeffs[first[0] + k:][span] for k, w in enumerate(wy))
        return sum(w * rows[:, first[1] + k:][:, span] for k, w in enumerate(wx))

    def kernel(self):
        """The centred stamp, for convolving extended sources."""
        return self.stamp(0.0, 0.0)

    def fwhm(self):
        """FWHM (arcsec) of the optical PSF, before pixel integration."""
        return self._fwhm

    def encircled_energy(self, radius_arcsec):
        """Share of the total flux within a radius (arcsec) of the optical PSF."""
        radius = np.asarray(radius_arcsec, dtype=float)
        if np.any(radius < 0) or np.any(radius > self._ee[0][-1]):
            raise CeersError(f"radius outside the computed field (0-{self._ee[0][-1]:.2f} arcsec)")
        energy = np.interp(radius, *self._ee)
        return float(energy) if energy.ndim == 0 else energy


def _bspline_weights(t):
    """Cubic B-spline weights of the four coefficients around a point t (0-1) past the second."""
    return np.array([(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1,
                     t**3]) / 6.0


def _centre(epsf):
    """Offset (pixels) that puts the centroid of the centred stamp on the pixel centre."""
    pix = np.arange(-epsf.halfsize, epsf.halfsize + 1)
    for _ in range(3):  # the window moves with the offset: converge
        kernel = epsf.kernel()
        moments = np.array([np.sum(kernel * pix[None, :]), np.sum(kernel * pix[:, None])])
        shift = moments / kernel.sum()
        epsf.centre = tuple(np.add(epsf.centre, shift))
    return epsf.centre


def model_version():
    """Short hash of every parameter of the model, naming its cache files."""
    params = {name: globals()[name] for name in _MODEL_PARAMETERS}
    text = json.dumps(params, sort_keys=True) + CACHE_FORMAT
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _build(filt):
    """Compute a filter's ePSF and its measures; return them as an HDUList."""
    log.info("computing the %s PSF (%d wavelengths, %d x %d pupil)", filt,
             len(wavelengths(filt)[0]), pupil_samples(filt), pupil_samples(filt))
    optical = optical_psf(filt)
    scale = PIXEL_SCALE[filter_channel(filt)] / OVERSAMPLE  # arcsec per ePSF sample
    epsf = _resample(optical, integrate=True)
    optical = _resample(optical, integrate=False)
    halfsize = _halfsize(epsf)
    keep = (halfsize + STAMP_MARGIN) * OVERSAMPLE
    mid = epsf.shape[0] // 2
    data = epsf[mid - keep:mid + keep + 1, mid - keep:mid + keep + 1].astype(np.float32)
    centre = _centre(EffectivePSF(filt, data, halfsize, (0.0, 0.0), 0.0, [0.0], [0.0]))
    radius, energy = _encircled(optical, scale)
    header = fits.Header()
    header["FILTER"] = filt
    header["PIXSCALE"] = (PIXEL_SCALE[filter_channel(filt)], "arcsec per detector pixel")
    header["OVERSAMP"] = (OVERSAMPLE, "ePSF samples per detector pixel")
    header["HALFSIZE"] = (halfsize, "stamp half-size, detector pixels")
    header["CENTX"] = (centre[0], "stamp centroid offset on the ePSF grid, pixels")
    header["CENTY"] = (centre[1], "stamp centroid offset on the ePSF grid, pixels")
    header["FWHM"] = (_fwhm(optical, scale), "arcsec, optical PSF")
    header["WFERMS"] = (WFE_RMS * 1e9, "nm, wavefront error")
    header["STREHL2"] = (strehl(2.0), "Strehl ratio of the wavefront error at 2 um")
    header["NWAVE"] = len(wavelengths(filt)[0])
    header["MODELVER"] = (model_version(), "hash of the PSF model parameters")
    table = fits.BinTableHDU.from_columns([fits.Column("RADIUS", "D", "arcsec", array=radius),
                                           fits.Column("EE", "D", array=energy)], name="EE")
    return fits.HDUList([fits.PrimaryHDU(header=header), fits.ImageHDU(data, name="EPSF"), table])


def _from_hdulist(hdul):
    head = hdul[0].header
    return EffectivePSF(head["FILTER"], hdul["EPSF"].data, head["HALFSIZE"],
                        (head["CENTX"], head["CENTY"]), head["FWHM"],
                        hdul["EE"].data["RADIUS"], hdul["EE"].data["EE"])


def _read_cache(path):
    """The cached HDUList at ``path`` if it is readable and current, else None."""
    try:
        with fits.open(path) as hdul:
            if hdul[0].header.get("MODELVER") != model_version():
                return None
            hdul = fits.HDUList([hdu.copy() for hdu in hdul])
        hdul["EPSF"].data.shape, hdul["EE"].data["EE"]  # noqa: B018 (both must be there)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        log.warning("ignoring unreadable PSF cache %s (%s)", path, err)
        return None
    return hdul


def cache_path(filt, cache_dir):
    """Where a filter's PSF is cached in ``cache_dir``."""
    return os.path.join(cache_dir, f"nircam_psf_{filt.lower()}_{model_version()}.fits")


def effective_psf(filt, cache_dir=None):
    """The :class:`EffectivePSF` of a CEERS filter, computed once and cached.

    Parameters
    ----------
    filt : str
        Filter name, e.g. ``"F200W"``.
    cache_dir : str, optional
        Directory of the FITS cache; defaults to ``$CEERS_PSF_CACHE``. Without
        either, the PSF is kept in memory only.
    """
    filt = str(filt).upper()
    if filt not in BANDPASS:
        raise CeersError(f"no PSF for filter {filt!r}; known: {', '.join(BANDPASS)}")
    cache_dir = cache_dir or os.environ.get(CACHE_ENV) or None
    key = (filt, os.path.abspath(cache_dir) if cache_dir else None)
    if key not in _MEMO:
        path = cache_path(filt, cache_dir) if cache_dir else None
        hdul = _read_cache(path) if path and os.path.exists(path) else None
        if hdul is None:
            hdul = _build(filt)
            if path:
                try:
                    write_hdulist(hdul, path)
                    log.info("cached the %s PSF in %s", filt, path)
                except OSError as err:  # the PSF is still good; only the reuse is lost
                    log.warning("cannot cache the %s PSF in %s (%s)", filt, cache_dir, err)
        _MEMO[key] = _from_hdulist(hdul)
    return _MEMO[key]
