"""Tests of the projection-domain low-dose simulation."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.errors import CancelledError
from medviewer.training.lowdose import (
    MU_WATER_PER_MM,
    QUARTER_DOSE,
    TENTH_DOSE,
    fbp,
    forward_project,
    simulate_low_dose,
    simulate_low_dose_volume,
)

N = 128
PX = 1.6  # 205 mm field of view


def _grid() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:N, :N] - (N - 1) / 2.0
    return yy, xx


@pytest.fixture(scope="module")
def water() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = _grid()
    img = np.full((N, N), -1000.0, np.float32)
    img[yy**2 + xx**2 < (90 / PX) ** 2] = 0.0
    roi = yy**2 + xx**2 < (40 / PX) ** 2
    return img, roi


def test_fbp_reconstructs_the_projected_image() -> None:
    yy, xx = _grid()
    img = np.full((N, N), -1000.0, np.float32)
    img[yy**2 + xx**2 < 50**2] = 40.0
    img[(yy - 10) ** 2 + (xx + 15) ** 2 < 8**2] = 700.0
    mu = np.clip(MU_WATER_PER_MM * (1 + img / 1000.0), 0, None) * PX
    rec = fbp(forward_project(mu, 128), N) / (MU_WATER_PER_MM * PX) * 1000.0 - 1000.0
    assert abs(rec[60:68, 90:98].mean() - 40.0) < 5.0
    assert abs(rec[(yy - 10) ** 2 + (xx + 15) ** 2 < 4**2].mean() - 700.0) < 30.0


def test_noise_scales_with_dose_and_mean_is_kept(water: tuple[np.ndarray, np.ndarray]) -> None:
    img, roi = water
    sd: dict[float, float] = {}
    for dose in (1.0, QUARTER_DOSE, TENTH_DOSE):
        outs = [simulate_low_dose(img, dose, pixel_mm=PX, seed=s) for s in range(3)]
        sd[dose] = float(np.mean([o[roi].std() for o in outs]))
        mean = float(np.mean([o[roi].mean() for o in outs]))
        assert abs(mean - 0.0) < 5.0, (dose, mean)
    for dose in (QUARTER_DOSE, TENTH_DOSE):
        expected = 1.0 / np.sqrt(dose)
        assert 0.85 * expected <= sd[dose] / sd[1.0] <= 1.15 * expected, sd
    assert sd[QUARTER_DOSE] > 3.0


def test_noise_is_correlated_and_streaky() -> None:
    yy, xx = _grid()
    img = np.full((N, N), -1000.0, np.float32)
    img[(yy / (60 / PX)) ** 2 + (xx / (95 / PX)) ** 2 < 1] = 0.0  # wide body: lateral rays are noisiest
    noise = simulate_low_dose(img, QUARTER_DOSE, pixel_mm=PX, seed=0, return_noise=True)
    c = noise[44:84, 44:84] - noise[44:84, 44:84].mean()

    def ac(dy: int, dx: int) -> float:
        a = c[: c.shape[0] - dy, : c.shape[1] - dx]
        b = c[dy:, dx:]
        return float((a * b).mean() / c.var())

    assert ac(0, 1) > 0.3 and ac(1, 0) > 0.2  # not white noise
    assert ac(0, 2) > ac(2, 0) + 0.15  # streaks along the long (lateral) axis


def test_deterministic_and_input_kept(water: tuple[np.ndarray, np.ndarray]) -> None:
    img, _ = water
    before = img.copy()
    a = simulate_low_dose(img, 0.3, pixel_mm=PX, seed=5)
    b = simulate_low_dose(img, 0.3, pixel_mm=PX, seed=5)
    c = simulate_low_dose(img, 0.3, pixel_mm=PX, seed=6)
    assert a.dtype == np.float32 and a.shape == img.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(img, before)
    par = simulate_low_dose(img, 0.3, pixel_mm=PX, seed=5, geometry="parallel")
    assert par.shape == img.shape and np.isfinite(par).all()


def test_non_square_slice() -> None:
    img = np.zeros((60, 90), np.float32)
    out = simulate_low_dose(img, 0.5, pixel_mm=2.0, seed=1)
    assert out.shape == (60, 90) and np.isfinite(out).all()


def test_bad_arguments(water: tuple[np.ndarray, np.ndarray]) -> None:
    img, _ = water
    with pytest.raises(ValueError, match="dose"):
        simulate_low_dose(img, 0.0)
    with pytest.raises(ValueError, match="geometry"):
        simulate_low_dose(img, 0.5, geometry="cone")
    with pytest.raises(ValueError, match="slice"):
        simulate_low_dose(np.zeros((2, 8, 8)), 0.5)


def test_volume_progress_and_cancel() -> None:
    vol = np.zeros((3, 64, 64), np.float32)
    seen: list[float] = []
    out = simulate_low_dose_volume(vol, 0.25, pixel_mm=3.0, seed=0, progress=lambda f, m: seen.append(f))
    assert out.shape == vol.shape and seen[-1] == 1.0
    assert not np.array_equal(out[0], out[1])  # independent noise per slice
    with pytest.raises(CancelledError):
        simulate_low_dose_volume(vol, 0.25, pixel_mm=3.0, cancel=lambda: True)


def test_dose_pair_and_noisy_input(water: tuple[np.ndarray, np.ndarray]) -> None:
    from medviewer.training.lowdose import simulate_dose_pair

    img, roi = water
    full, low = simulate_dose_pair(img, QUARTER_DOSE, pixel_mm=PX, seed=3)
    nf, nl = (full - img)[roi], (low - img)[roi]
    assert 1.7 < nl.std() / nf.std() < 2.3  # quarter dose: twice the noise
    # the low-dose counts are a thinning of the full-dose counts: correlated noise, r ~ sqrt(dose)
    assert 0.3 < np.corrcoef(nf, nl)[0, 1] < 0.7
    # a noisy full-dose input only gets the extra noise: total ~ that of a quarter-dose scan
    extra = simulate_low_dose(full, QUARTER_DOSE, pixel_mm=PX, seed=4, input_dose=1.0)
    assert 0.85 < (extra - img)[roi].std() / nl.std() < 1.15
    with pytest.raises(ValueError, match="input_dose"):
        simulate_low_dose(full, 0.5, pixel_mm=PX, input_dose=0.4)
