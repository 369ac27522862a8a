"""The Fourier-optics effective PSF: optics, normalisation, drawing and the cache.

Each filter's PSF is computed once per session into a temporary cache; the
heavier checks run on one short-wave and one long-wave filter.
"""

import os

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

from ceers_nircam import nircam
from ceers_nircam.cli import CeersError
from ceers_nircam.offline import psf
from ceers_nircam.offline.instrument import PSF_FWHM

HEAVY = ("F200W", "F444W")
OFFSETS = [(0.0, 0.0), (0.5, 0.5), (-0.5, 0.25), (0.3, -0.2), (-0.13, -0.41), (0.5, -0.5)]


@pytest.fixture(scope="session")
def psf_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("psf_cache"))


@pytest.fixture(scope="session")
def get_psf(psf_cache):
    """Return the session's EffectivePSF of a filter, computing it on first use."""
    return lambda filt: psf.effective_psf(filt, psf_cache)


def _centroid(image):
    half = image.shape[0] // 2
    pix = np.arange(-half, half + 1)
    total = image.sum()
    return np.sum(image * pix[None, :]) / total, np.sum(image * pix[:, None]) / total


# ------------------------------------------------------------ optics ----

@pytest.mark.parametrize("filt", list(psf.BANDPASS))
def test_fwhm_matches_the_instrument_table(get_psf, filt):
    assert get_psf(filt).fwhm() == pytest.approx(PSF_FWHM[filt], rel=0.10)


@pytest.mark.parametrize("filt", ["F115W", "F150W", "F200W"])
def test_short_wave_encircled_energy_at_08_arcsec(get_psf, filt):
    assert 0.88 <= get_psf(filt).encircled_energy(0.8) <= 0.95


def test_strehl_at_2um_is_about_08():
    assert 0.75 <= psf.strehl(2.0) <= 0.85
    # The Marechal estimate from the rms agrees: the error is not dominated by a few big modes.
    assert psf.strehl(2.0) == pytest.approx(np.exp(-(2 * np.pi * psf.WFE_RMS / 2e-6) ** 2), abs=0.03)


def test_wavefront_is_seeded_150nm_spread_over_three_parts():
    n = 256
    trans = psf.pupil(n)
    first = psf.wavefront(n)
    psf._wfe_scales.cache_clear()
    assert np.array_equal(first, psf.wavefront(n))
    assert psf._rms(first, trans) == pytest.approx(150e-9, rel=0.02)
    parts, _ = psf._centred_parts(n)
    rms = [psf._rms(k * p, trans) for k, p in zip(psf._wfe_scales(), parts)]
    assert min(rms) > 60e-9  # low orders, segment piston/tip/tilt and the ripple all count
    # The ripple carries power at scales well below a segment: it makes the halo.
    spectrum = np.abs(np.fft.fft2(parts[2] * trans)) ** 2
    freq = np.hypot(*np.meshgrid(*2 * [np.fft.fftfreq(n, psf._grid(n)[1])]))
    assert spectrum[freq > 3.0].sum() > 0.05 * spectrum.sum()


def test_pupil_has_18_segments_gaps_and_struts():
    n = 1024
    trans = psf.pupil(n)
    coords, delta = psf._grid(n)
    hexagon = np.sqrt(3) / 2 * psf.SEGMENT_FLAT**2
    struts = 3 * psf.STRUT_WIDTH * 2.6  # outside the empty centre, roughly
    assert trans.sum() * delta**2 == pytest.approx(18 * hexagon - struts, rel=0.01)

    def at(x, y):
        return trans[np.argmin(np.abs(coords - y)), np.argmin(np.abs(coords - x))]

    centres = psf.segment_centres()
    assert len(centres) == 18
    assert all(at(x + 0.2, y + 0.1) == 1.0 for x, y in centres)  # off the struts
    pairs = [(a, b) for a in centres for b in centres
             if 0 < np.hypot(*(a - b)) < 1.1 * (psf.SEGMENT_FLAT + psf.SEGMENT_GAP)]
    assert len(pairs) == 2 * 36  # each of the 36 shared edges seen from both sides
    assert all(at(*(a + b) / 2) < 0.75 for a, b in pairs)  # the gap between neighbours
    assert at(0.0, 0.0) == 0.0  # the empty centre
    assert at(0.0, 2.0) < 0.6 and at(-1.0, -np.sqrt(3)) < 0.6  # upper strut, a lower one


def test_parseval_fixes_the_normalisation():
    """Over one full period the MFT returns all the power the sampled pupil passes."""
    n = 201  # odd, so the symmetric output grid is exactly one period
    trans = psf.pupil(n)
    coords, delta = psf._grid(n)
    wave = 2e-6
    field = trans * np.exp(2j * np.pi * psf.wavefront(n) / wave)
    step = wave / (n * delta)  # rad; n steps make one period
    amplitude = psf._mft(field, coords, coords, wave, step, n // 2, dtype=np.complex128)
    power = np.sum(np.abs(amplitude) ** 2) * (step / wave) ** 2
    assert power == pytest.approx(np.sum(trans**2) * delta**2, rel=1e-10)
    assert np.sum(trans**2) <= np.sum(trans)  # sub-sample gaps scatter beyond the period


@pytest.mark.parametrize("filt", HEAVY)
def test_encircled_energy_tends_to_the_transmitted_power(get_psf, filt):
    n = psf.pupil_samples(filt)
    trans = psf.pupil(n)
    ee = get_psf(filt).encircled_energy
    outer = ee(psf.field_halfwidth(filt) - 0.1)
    assert 0.99 < outer < np.sum(trans**2) / np.sum(trans) < 1.0
    assert np.all(np.diff(ee(np.linspace(0, 3, 200))) >= 0)


def _azimuthal(kernel, pixel_scale, r0, r1):
    """Median over radius of the intensity relative to its ring median, at 0.5 deg steps."""
    half = kernel.shape[0] // 2
    radii = np.arange(r0, r1, 0.5 * pixel_scale) / pixel_scale
    angles = np.deg2rad(np.arange(0, 360, 0.5))
    rr, aa = np.meshgrid(radii, angles, indexing="ij")
    values = ndimage.map_coordinates(kernel, [half + rr * np.sin(aa), half + rr * np.cos(aa)], order=1)
    profile = np.median(values / np.median(values, axis=1, keepdims=True), axis=0)
    return lambda deg: profile[(np.arange(-3, 4) + int(round(deg / 0.5))) % profile.size].max()


@pytest.mark.parametrize("filt", HEAVY)
def test_six_strong_spikes_and_two_weak_ones(get_psf, filt):
    # Beyond the speckle halo: 20-40 lambda/D (1.3-2.5" at F200W, 2.7-5.4" at F444W).
    epsf = get_psf(filt)
    lam_d = np.mean(psf.BANDPASS[filt]) * 1e-6 / 6.6 * psf.RAD_TO_ARCSEC
    level = _azimuthal(epsf.kernel(), epsf.pixel_scale, 20 * lam_d, 40 * lam_d)
    hexagon = [level(a) for a in (30, 90, 150, 210, 270, 330)]
    struts = [level(a) for a in (0, 180)]
    between = [level(a) for a in (60, 120, 240, 300)]
    assert min(hexagon) > 2.5 * max(between)
    assert max(struts) < min(hexagon)
    assert min(struts) > 1.2 * max(between)  # weak, yet there


# ------------------------------------------------------------ stamps ----

@pytest.mark.parametrize("filt", HEAVY)
def test_stamps_hold_at_least_99_percent_unrenormalised(get_psf, filt):
    epsf = get_psf(filt)
    kernel = epsf.kernel()
    assert kernel.shape == (2 * epsf.halfsize + 1,) * 2
    assert epsf.fraction == pytest.approx(kernel.sum(), rel=1e-12)
    assert 0.99 <= epsf.fraction < 0.995
    for dx, dy in OFFSETS:
        assert epsf.stamp(dx, dy).sum() == pytest.approx(epsf.fraction, rel=1e-3)
        assert epsf.stamp(dx, dy).sum() >= 0.99
    # Absolute scale: the central square lies between the inscribed and circumscribed
    # circles' encircled energy, which comes from the optical PSF and Parseval alone.
    r = 20
    half = epsf.halfsize
    square = kernel[half - r:half + r + 1, half - r:half + r + 1].sum()
    side = (r + 0.5) * epsf.pixel_scale
    assert epsf.encircled_energy(side) < square < epsf.encircled_energy(side * np.sqrt(2))


@pytest.mark.parametrize("filt", HEAVY)
def test_drawn_centroid_is_the_requested_position(get_psf, filt):
    epsf = get_psf(filt)
    for dx, dy in OFFSETS:
        cx, cy = _centroid(epsf.stamp(dx, dy))
        assert abs(cx - dx) < 0.005 and abs(cy - dy) < 0.005, (dx, dy, cx, cy)


@pytest.mark.parametrize("filt", HEAVY)
def test_core_sits_on_the_centroid(get_psf, filt):
    """The peak region and the whole stamp agree on the centre (no coma-like offset)."""
    kernel = get_psf(filt).kernel()
    half = kernel.shape[0] // 2
    cx, cy = _centroid(kernel[half - 2:half + 3, half - 2:half + 3])
    assert abs(cx) < 0.05 and abs(cy) < 0.05
    assert np.unravel_index(kernel.argmax(), kernel.shape) == (half, half)


def test_interpolation_is_the_cubic_spline_and_close_to_exact(get_psf):
    epsf = get_psf("F200W")
    half, mid = epsf.halfsize, epsf.data.shape[0] // 2
    pix = np.arange(-half, half + 1)
    # Exact shift of the band-limited ePSF (Fourier phase ramp), sampled at pixel centres.
    freq_y, freq_x = np.fft.fftfreq(epsf.data.shape[0])[:, None], np.fft.rfftfreq(epsf.data.shape[0])
    for dx, dy in [(0.125, -0.375), (0.3, 0.0)]:
        sx, sy = (dx - epsf.centre[0]) * epsf.oversample, (dy - epsf.centre[1]) * epsf.oversample
        ramp = np.exp(-2j * np.pi * (freq_x * sx + freq_y * sy))
        shifted = np.fft.irfft2(np.fft.rfft2(epsf.data) * ramp, s=epsf.data.shape)
        exact = shifted[mid + pix[:, None] * epsf.oversample, mid + pix[None, :] * epsf.oversample]
        drawn = epsf.stamp(dx, dy)
        assert np.max(np.abs(drawn - exact)) < 1e-3 * exact.max()
        rows, cols = np.meshgrid(mid + (pix - dy + epsf.centre[1]) * epsf.oversample,
                                 mid + (pix - dx + epsf.centre[0]) * epsf.oversample, indexing="ij")
        spline = ndimage.map_coordinates(epsf.data.astype(float), [rows, cols], order=3, mode="mirror")
        assert np.max(np.abs(drawn - spline)) < 1e-6 * exact.max()


def test_kernel_is_the_centred_stamp(get_psf):
    epsf = get_psf("F200W")
    assert np.array_equal(epsf.kernel(), epsf.stamp(0, 0))
    assert epsf.oversample == psf.OVERSAMPLE
    assert epsf.pixel_scale == 0.0311 and get_psf("F444W").pixel_scale == 0.0629


def test_every_ceers_filter_has_a_band():
    assert set(psf.BANDPASS) == set(nircam.FILTERS)
    for filt, (lo, hi) in psf.BANDPASS.items():
        assert lo < int(filt[1:4]) / 100 < hi


def test_user_errors_are_ceers_errors(get_psf):
    with pytest.raises(CeersError, match="F999W"):
        psf.effective_psf("F999W")
    epsf = get_psf("F200W")
    with pytest.raises(CeersError):
        epsf.stamp(0.7, 0.0)
    with pytest.raises(CeersError):
        epsf.encircled_energy(1e3)


# ------------------------------------------------------------- cache ----

def test_second_call_reads_the_cache(get_psf, psf_cache, monkeypatch):
    first = get_psf("F200W")
    path = psf.cache_path("F200W", psf_cache)
    mtime = os.stat(path).st_mtime_ns
    assert fits.getheader(path)["MODELVER"] == psf.model_version()
    monkeypatch.setattr(psf, "_MEMO", {})
    monkeypatch.setattr(psf, "_build", lambda filt: pytest.fail("recomputed a cached PSF"))
    again = psf.effective_psf("F200W", psf_cache)
    assert again is not first
    assert os.stat(path).st_mtime_ns == mtime
    assert np.array_equal(again.kernel(), first.kernel())
    assert psf.effective_psf("F200W", psf_cache) is again  # and then from memory


def test_cache_directory_defaults_to_the_environment(get_psf, psf_cache, monkeypatch):
    get_psf("F200W")
    monkeypatch.setattr(psf, "_MEMO", {})
    monkeypatch.setattr(psf, "_build", lambda filt: pytest.fail("recomputed a cached PSF"))
    monkeypatch.setenv(psf.CACHE_ENV, psf_cache)
    assert psf.effective_psf("f200w").filter == "F200W"


def test_unreadable_cache_is_rebuilt(get_psf, psf_cache, tmp_path, monkeypatch):
    good = get_psf("F444W")
    path = psf.cache_path("F444W", str(tmp_path))
    with open(path, "w") as handle:
        handle.write("not FITS")
    built = []

    def build(filt):  # stands in for the computation: the session's result
        built.append(filt)
        with fits.open(psf.cache_path(filt, psf_cache)) as hdul:
            return fits.HDUList([hdu.copy() for hdu in hdul])

    monkeypatch.setattr(psf, "_MEMO", {})
    monkeypatch.setattr(psf, "_build", build)
    again = psf.effective_psf("F444W", str(tmp_path))
    assert built == ["F444W"]
    assert again.halfsize == good.halfsize and again.fraction == good.fraction
    assert fits.getheader(path)["FILTER"] == "F444W"
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]  # no temporary left


def test_unwritable_cache_still_gives_the_psf(get_psf, psf_cache, tmp_path, monkeypatch):
    good = get_psf("F444W")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    with fits.open(psf.cache_path("F444W", psf_cache)) as hdul:
        cached = fits.HDUList([hdu.copy() for hdu in hdul])
    monkeypatch.setattr(psf, "_MEMO", {})
    monkeypatch.setattr(psf, "_build", lambda filt: cached)
    assert psf.effective_psf("F444W", str(blocker / "psf")).fraction == good.fraction
