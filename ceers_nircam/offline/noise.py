"""Time-resolved 1/f readout noise of the NIRCam detectors.

Each output's video signal carries noise with a 1/f power spectrum, part of
it common to the four outputs of a detector and part of it each output's
own. Pixels are read one after another at the 10 microsecond pixel clock,
row after row, so noise slower than a row's read time becomes horizontal
stripes, and faster noise becomes extra pixel-to-pixel scatter along the
row that no row median removes. Both are new in every frame.

The noise is drawn in two frequency bands with disjoint spectra, whose sum
is the full process:

- from the frame rate to half the row rate, one sample per row over the
  whole integration (every frame, read or dropped, in time order), averaged
  over each group's frames as MEDIUM8 does, and interpolated along each row
  by read time;
- above it (to F_HIGH), per group, one series along the frame's read order. Frames are
  seconds apart while this band's correlation time is milliseconds, so the
  average of a group's NFRAMES independent frame series is drawn directly as
  one series with 1/NFRAMES of the power: the same Gaussian process, for an
  eighth of the random numbers.

Only light-sensitive pixels receive it: the reference pixels stay quiet, so
reference-pixel correction leaves the injected striping in the rate image
unchanged and the truth below is what the pipeline's rate holds.
"""

import dataclasses

import numpy as np
import scipy.fft

from .. import nircam

# PSD level (DN^2/Hz at 1 Hz) of one output's 1/f noise in a single frame:
# the common part and each output's own part. With the synthetic read noise
# they make a dark's rate noise about 1.8 times the read-noise prediction
# and the striping of a 9-group F150W exposure about 0.34 times its
# per-pixel background noise, as in flight (JDox detector performance;
# Schlawin et al. 2020).
PSD_COMMON = {"SHORT": 3.1, "LONG": 2.4}
PSD_OWN = {"SHORT": 3.1, "LONG": 2.4}
# Drifts slower than a frame are what the reference pixels track and the
# pipeline's reference-pixel correction removes, so the spectrum starts at
# the frame rate; above about 1 kHz the white read noise of the reference
# file already describes the noise.
F_HIGH = 1000.0


@dataclasses.dataclass
class Readout:
    """Timing of one exposure's readout: what the noise needs to know."""

    detector: str
    shape: tuple  # (ny, nx) of the image as read
    noutputs: int
    ngroups: int
    nframes: int
    groupgap: int

    @property
    def width(self):
        return self.shape[1] // self.noutputs

    @property
    def row_clocks(self):
        return self.width + nircam.ROW_OVERHEAD

    @property
    def frame_rows(self):
        return self.shape[0] + nircam.FRAME_ROW_OVERHEAD

    @property
    def row_time(self):
        return self.row_clocks * nircam.PIXEL_TIME


def one_over_f_series(rng, n, dt, psd_1hz, band, nseries=1, nfft=None):
    """Gaussian series with one-sided PSD ``psd_1hz / f`` (DN^2/Hz) inside ``band`` (Hz).

    Sampled every ``dt`` seconds; ``nfft`` (>= n) may be a faster FFT length
    of which the first ``n`` samples are kept, as a stationary process allows.
    """
    nfft = nfft or n
    freq = np.fft.rfftfreq(nfft, dt)
    keep = (freq >= band[0]) & (freq < band[1]) & (freq > 0)
    # A bin of width df holds variance psd * df; irfft spreads each positive
    # bin over a conjugate pair, whence the factor nfft / 2 on its amplitude.
    sigma = np.zeros(freq.size)
    sigma[keep] = np.sqrt(psd_1hz / freq[keep] / (nfft * dt)) * nfft / 2.0
    shape = (nseries, freq.size)
    spec = sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    return scipy.fft.irfft(spec, n=nfft, axis=-1)[:, :n]


def _row_band(rng, ro, psd_common, psd_own):
    """Slow noise, one sample per row over the whole integration, group-averaged.

    Returns (ngroups, 1 + noutputs, frame_rows + 1): common part first.
    """
    per_group = ro.nframes + ro.groupgap
    nrows = ro.ngroups * per_group * ro.frame_rows + 1
    nfft = scipy.fft.next_fast_len(nrows, real=True)
    band = (1.0 / (ro.frame_rows * ro.row_time), 0.5 / ro.row_time)
    series = np.concatenate([
        one_over_f_series(rng, nrows, ro.row_time, psd_common, band, 1, nfft),
        one_over_f_series(rng, nrows, ro.row_time, psd_own, band, ro.noutputs, nfft)])
    out = np.empty((ro.ngroups, series.shape[0], ro.frame_rows + 1))
    for g in range(ro.ngroups):
        frames = [series[:, start:start + ro.frame_rows + 1]
                  for start in (np.arange(ro.nframes) + g * per_group) * ro.frame_rows]
        out[g] = np.mean(frames, axis=0)
    return out


def _read_order_to_image(block, detector):
    """Turn one output's block from read order (rows read, pixels read) into the science frame."""
    fast, slow = nircam.READOUT_AXES[detector.upper()]
    return block[:: 1 if slow > 0 else -1, :: 1 if fast > 0 else -1]


# Ramp fitting weights group i of a segment of n groups by |i - m| / m to a
# power set by the segment's signal-to-noise (m = (n - 1) / 2): the powers of
# stcal's optimal weighting and the signal-to-noise below which each applies.
SNR_POWERS = ((5.0, 0.0), (10.0, 0.4), (20.0, 1.0), (50.0, 3.0), (100.0, 6.0), (np.inf, 10.0))


def fit_weights(ngroups, power):
    """Coefficients c_g such that sum(c_g y_g) is the slope (per group) of an
    optimally weighted straight-line fit of ``ngroups`` values at ``power``."""
    x = np.arange(ngroups, dtype=np.float64)
    mid = (ngroups - 1) / 2.0
    w = np.abs((x - mid) / mid) ** power if power > 0 else np.ones(ngroups)
    xbar = (w * x).sum() / w.sum()
    return w * (x - xbar) / (w * (x - xbar) ** 2).sum()


def weighting_power(snr):
    """The weighting power ramp fitting chooses at each signal-to-noise."""
    power = np.full(np.shape(snr), SNR_POWERS[-1][1])
    for bound, value in reversed(SNR_POWERS):
        power = np.where(snr < bound, value, power)
    return power


class OneOverF:
    """1/f noise (DN) of one exposure, group by group, and the striping it leaves.

    ``light`` marks the light-sensitive pixels (the others stay quiet);
    ``group_time`` is the time between groups; ``psd_common`` and
    ``psd_own`` are the PSD levels (DN^2/Hz at 1 Hz, one frame) of the part
    shared by the outputs and of each output's own part. The slope of the
    injected noise is accumulated for every weighting power ramp fitting
    may use, so the truth can follow each pixel's weighting.
    """

    def __init__(self, rng, readout, light, group_time, psd_common, psd_own):
        self.rng, self.ro, self.light = rng, readout, light
        self.psd = (psd_common, psd_own)
        self.slow = _row_band(rng, readout, psd_common, psd_own).astype(np.float32)
        self.coeffs = {p: fit_weights(readout.ngroups, p) / group_time for _, p in SNR_POWERS}
        self.slopes = {p: np.zeros(readout.shape, dtype=np.float32) for p in self.coeffs}

    def frame(self, g):
        """The noise of group ``g`` (call once per group, in order)."""
        ro, (psd_common, psd_own) = self.ro, self.psd
        ny, nx = ro.shape
        flen = ro.frame_rows * ro.row_clocks
        nfft = scipy.fft.next_fast_len(flen, real=True)
        band = (0.5 / ro.row_time, F_HIGH)
        fast = one_over_f_series(self.rng, flen, nircam.PIXEL_TIME, psd_own / ro.nframes, band,
                                 ro.noutputs, nfft)
        fast += one_over_f_series(self.rng, flen, nircam.PIXEL_TIME, psd_common / ro.nframes,
                                  band, 1, nfft)
        # Share of the way to the next row's slow sample at each pixel's read time.
        step = (np.arange(ro.width, dtype=np.float32) / ro.row_clocks)[None, :]
        frame = np.empty(ro.shape, dtype=np.float32)
        for a, cs in enumerate(nircam.amp_slices(nx, ro.noutputs)):
            s = self.slow[g, 0] + self.slow[g, a + 1]
            block = fast[a].astype(np.float32).reshape(ro.frame_rows, ro.row_clocks)[:ny, :ro.width]
            block = block + s[:ny, None] * (1 - step) + s[1:ny + 1, None] * step
            frame[:, cs] = _read_order_to_image(block, ro.detector)
        frame[~self.light] = 0.0
        for p, slope in self.slopes.items():
            slope += np.float32(self.coeffs[p][g]) * frame
        return frame

    def slope(self, power=None):
        """The injected noise's slope image (DN/s) under each pixel's weighting
        ``power`` (an array, or None for the unweighted fit)."""
        if power is None:
            return self.slopes[0.0]
        out = np.zeros(self.ro.shape, dtype=np.float32)
        for p, slope in self.slopes.items():
            out = np.where(power == p, slope, out)
        return out

    def truth(self, power=None):
        """(rows, cols): the striping the slope fit of the injected noise gives.

        rows (noutputs, ny) is each output's row pattern (DN/s), averaged over
        the light-sensitive pixels of each amplifier-row; cols (nx,) the
        column means of the slope image once the row pattern is removed.
        ``power`` gives each pixel's weighting (as ramp fitting will choose
        it); None means an unweighted fit.
        """
        return _stripe_truth(self.slope(power), self.light,
                             nircam.amp_slices(self.ro.shape[1], self.ro.noutputs))


def _stripe_truth(slope, light, amps):
    """Row pattern per output and column pattern of a slope image, over light pixels."""
    ny, nx = slope.shape
    rows = np.zeros((len(amps), ny))
    resid = np.where(light, slope, 0.0)
    for a, cs in enumerate(amps):
        n = light[:, cs].sum(axis=1)
        rows[a] = resid[:, cs].sum(axis=1) / np.maximum(n, 1)
        resid[:, cs] -= np.where(light[:, cs], rows[a][:, None], 0.0)
    cols = resid.sum(axis=0) / np.maximum(light.sum(axis=0), 1)
    return rows.astype(np.float32), cols.astype(np.float32)
