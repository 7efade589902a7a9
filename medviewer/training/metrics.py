"""Image-quality metrics for CT denoising (PSNR, SSIM) on a fixed HU scale.

Both metrics clip to [-1000, 1000] HU and use a data range of 2000 HU, so
figures are comparable between slices, methods and doses. SSIM is
scikit-image's implementation (Wang et al. 2004, 7x7 window).

Examples
--------
>>> import numpy as np
>>> ref = np.zeros((32, 32), np.float32)
>>> round(psnr_hu(ref, ref + 20.0), 2)
40.0
>>> ssim_hu(ref, ref)
1.0
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

HU_CLIP = (-1000.0, 1000.0)
DATA_RANGE = HU_CLIP[1] - HU_CLIP[0]


def _clip(a: ArrayLike) -> NDArray[np.float64]:
    return np.clip(np.asarray(a, dtype=np.float64), *HU_CLIP)


def _check(reference: ArrayLike, test: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    ref, tst = _clip(reference), _clip(test)
    if ref.shape != tst.shape:
        raise ValueError(f"reference {ref.shape} and test {tst.shape} differ in shape")
    return ref, tst


def psnr_hu(reference: ArrayLike, test: ArrayLike) -> float:
    """PSNR (dB) of ``test`` against ``reference``, both HU, clipped to [-1000, 1000].

    Parameters
    ----------
    reference, test : array_like
        Same-shape images in HU.

    Returns
    -------
    float
        ``10 log10(2000^2 / MSE)``; ``inf`` for identical images.
    """
    ref, tst = _check(reference, test)
    if np.array_equal(ref, tst):
        return float("inf")
    return float(peak_signal_noise_ratio(ref, tst, data_range=DATA_RANGE))


def ssim_hu(reference: ArrayLike, test: ArrayLike) -> float:
    """Mean SSIM of ``test`` against ``reference`` (HU clipped, data range 2000).

    Parameters
    ----------
    reference, test : array_like
        Same-shape 2D images in HU (at least 7 x 7).
    """
    ref, tst = _check(reference, test)
    return float(structural_similarity(ref, tst, data_range=DATA_RANGE))


def noise_sd_hu(reference: ArrayLike, test: ArrayLike) -> float:
    """Standard deviation (HU) of ``test - reference`` (unclipped): the noise level."""
    ref = np.asarray(reference, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    return float(np.std(tst - ref))


__all__ = ["HU_CLIP", "DATA_RANGE", "psnr_hu", "ssim_hu", "noise_sd_hu"]
