"""MOLLI source images of a T1-map phantom slice.

:func:`make_molli_source` produces the inversion-recovery source images of a phantom slice
from the three-parameter Look-Locker model ``S(TI) = A - B exp(-TI / T1*)`` with
``T1* = T1 / (B/A - 1)``, at the inversion times of a MOLLI scheme
(:func:`molli_inversion_times`).
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from models.phantoms.anatomy import STRUCTURE_TISSUE, Structure
from models.phantoms.t1map import PhantomSlice
from models.phantoms.t1map_synthesis import (
    F32,
    _structure_t1,
)
from models.phantoms.tissues import PROTON_DENSITY, T2_MS, Tissue

__all__ = ["make_molli_source", "molli_inversion_times"]


_SCHEME_RE = re.compile(r"^\s*(\d+)(s?)((?:\s*\(\s*\d+s?\s*\)\s*\d+s?)*)\s*$")
_SCHEME_PART_RE = re.compile(r"\(\s*(\d+)(s?)\s*\)\s*(\d+)(s?)")
FLIP_ANGLE_DEG = 35.0


def molli_inversion_times(
    scheme: str = "5(3)3",
    *,
    heart_rate_bpm: float = 60.0,
    first_ti_ms: float = 110.0,
    ti_increment_ms: float = 80.0,
) -> npt.NDArray[np.float64]:
    """Inversion times (ms, acquisition order) of a MOLLI scheme.

    ``"5(3)3"`` means 5 images after the first inversion, 3 recovery heartbeats, 3 images
    after the second; an ``s`` suffix counts seconds instead of heartbeats (``"5s(3s)3s"``).
    Each inversion's first TI is ``first_ti_ms`` plus ``ti_increment_ms`` per preceding
    inversion; later images follow one RR interval apart.

    Raises
    ------
    ValueError
        If the scheme is not of that form or the timing is implausible.
    """
    match = _SCHEME_RE.match(scheme)
    if match is None:
        raise ValueError(f"MOLLI scheme {scheme!r} is not of the form 5(3)3 or 4s(1s)3s(1s)2s")
    if not 30.0 <= heart_rate_bpm <= 200.0:
        raise ValueError(f"Heart rate {heart_rate_bpm} bpm is implausible")
    rr = 60000.0 / heart_rate_bpm
    if first_ti_ms <= 0 or first_ti_ms >= rr:
        raise ValueError(f"First TI {first_ti_ms} ms must lie within one RR interval ({rr:.0f})")
    counts = [(int(match.group(1)), bool(match.group(2)))]
    for part in _SCHEME_PART_RE.finditer(match.group(3)):
        counts.append((int(part.group(3)), bool(part.group(4))))
    tis: list[float] = []
    for index, (count, seconds) in enumerate(counts):
        n_images = max(1, int(count * 1000.0 // rr)) if seconds else count
        start = first_ti_ms + index * ti_increment_ms
        tis.extend(start + k * rr for k in range(n_images))
    return np.asarray(tis, dtype=np.float64)


def _look_locker_parameters(t1_ms: npt.ArrayLike, t2_ms: npt.ArrayLike, pd: npt.ArrayLike
                            ) -> tuple[npt.NDArray[np.float64], ...]:
    """(A, B, T1*) of the three-parameter model for tissues of given T1, T2, PD.

    A follows the bSSFP steady state (~ sqrt(T2/T1)); the readout shortens T1* with
    ``T1 / T1* = 1 + 0.045 sqrt(T1/T2)`` so that ``T1 = T1* (B/A - 1)`` holds exactly.
    """
    t1 = np.maximum(np.asarray(t1_ms, dtype=np.float64), 1.0)
    t2 = np.maximum(np.asarray(t2_ms, dtype=np.float64), 1.0)
    ratio = 1.0 + 0.045 * np.sqrt(t1 / t2)
    t1_star = t1 / ratio
    a = np.asarray(pd, dtype=np.float64) * np.sqrt(np.minimum(t2 / t1, 1.0))
    b = a * (1.0 + ratio)
    return a, b, t1_star


def make_molli_source(
    rng: np.random.Generator,
    phantom_slice: PhantomSlice,
    scheme: str = "5(3)3",
    *,
    heart_rate_bpm: float | None = None,
    first_ti_ms: float | None = None,
    ti_increment_ms: float = 80.0,
    snr: float | None = None,
) -> tuple[F32, npt.NDArray[np.float64]]:
    """Inversion-recovery magnitude images from which a MOLLI map of the slice is fitted.

    Each pixel sums the signed Look-Locker signals of the tissues it contains (partial
    volume in the signal domain), then complex Gaussian noise is added and the magnitude
    taken (Rician statistics, signal nulling near ``TI = T1* ln(B/A)``).

    Parameters
    ----------
    rng
        Random generator.
    phantom_slice
        The slice whose noise-free T1 values are imaged.
    scheme
        MOLLI sampling scheme, e.g. ``"5(3)3"``, ``"3(3)3(3)5"``, ``"4s(1s)3s(1s)2s"``.
    heart_rate_bpm
        Heart rate; drawn from 55–85 bpm if ``None``.
    first_ti_ms
        Shortest inversion time; drawn from 100–120 ms if ``None``.
    ti_increment_ms
        Offset of each further inversion's first TI.
    snr
        Signal-to-noise ratio of blood at full recovery; drawn from 40–90 if ``None``.

    Returns
    -------
    images, inversion_times_ms
        float32 (n, rows, cols) magnitudes (arbitrary units, ~0–1000) and the TIs (ms)
        in acquisition order.
    """
    hr = float(rng.uniform(55.0, 85.0)) if heart_rate_bpm is None else float(heart_rate_bpm)
    ti0 = float(rng.uniform(100.0, 120.0)) if first_ti_ms is None else float(first_ti_ms)
    tis = molli_inversion_times(scheme, heart_rate_bpm=hr, first_ti_ms=ti0,
                                ti_increment_ms=ti_increment_ms)
    shape = phantom_slice.shape
    signal = np.zeros((tis.size, *shape), dtype=np.float64)
    rendered = phantom_slice.rendered
    case = phantom_slice.heart
    if rendered is not None and case is not None:
        t1_values = _structure_t1(case)
        for structure in Structure:
            frac = rendered.fractions[int(structure)]
            if not frac.any():
                continue
            tissue = STRUCTURE_TISSUE[structure]
            t1: npt.NDArray[np.float64] | float = t1_values[structure]
            if structure is Structure.LV_LESION:
                t1 = t1_values[structure] + rendered.lesion_rise_ms.astype(np.float64)
            a, b, t1s = _look_locker_parameters(t1, T2_MS[tissue], PROTON_DENSITY[tissue])
            signal += frac[None] * (a - b * np.exp(-tis[:, None, None] / t1s))
    else:
        clean = phantom_slice.t1_clean_ms if phantom_slice.t1_clean_ms is not None else (
            phantom_slice.t1_ms)
        pd = phantom_slice.signal if phantom_slice.signal is not None else np.where(
            clean > 0, PROTON_DENSITY[Tissue.MYOCARDIUM], 0.0)
        a, b, t1s = _look_locker_parameters(clean, T2_MS[Tissue.MYOCARDIUM], pd)
        signal = a[None] - b[None] * np.exp(-tis[:, None, None] / t1s[None])
    blood_a, _, _ = _look_locker_parameters(
        1600.0, T2_MS[Tissue.BLOOD], PROTON_DENSITY[Tissue.BLOOD])
    scale = 1000.0 / float(blood_a)
    snr_value = float(rng.uniform(40.0, 90.0)) if snr is None else float(snr)
    sigma = 1000.0 / snr_value
    noise = rng.normal(0.0, sigma, size=(2, *signal.shape))
    images = np.hypot(signal * scale + noise[0], noise[1]).astype(np.float32)
    return images, tis
