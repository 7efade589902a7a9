"""CT-valued slices made from real medical images that are not CT: real structure for the denoiser.

The phantoms are model-made anatomy, and the dead leaves
(:mod:`medviewer.training.dead_leaves`) are structure with no anatomy. The
denoiser still loses most against classical filters on real anatomy (the
evaluation's real CT slices). These slices lend it real anatomical structure
(organ outlines, vessels, trabecular bone, fat planes, the texture of living
tissue) from the DICOM sample packages' images of *other* modalities:

=====================================  =============  ============================
file                                   package        content
=====================================  =============  ============================
``MR-SIEMENS-DICOM-WithOverlays.dcm``  pydicom-data   axial abdominal MR, 484 x 484
``MR2_UNCR.dcm``                       pydicom-data   shoulder MR, 1024 x 1024
``RG1_UNCR.dcm``                       pydicom-data   chest radiograph
``RG3_UNCR.dcm``                       pydicom-data   lower-leg radiograph
``animals/cat.dcm``                    deid-data      a cat's chest and abdomen, radiograph
=====================================  =============  ============================

None of them is CT, and none is an evaluation file of either issue (those are
CT slices; :data:`EVALUATION_FILES` lists them and a test keeps them apart).
The JPEG copies of these images in the packages (``*_J2KR``, ``*_J2KI``,
``*_UNCI``) add nothing and are not used.

``train denoiser --photos`` makes slices the same way from the pictures
bundled with scikit-image (:data:`PHOTO_SOURCES`: photographs, textures, a
fundus photograph, a stained tissue section), read offline from its package.

A slice is a random crop of one image (any orientation, 35-100 % of its
shorter side), resampled to the slice's size, with its grey levels mapped to
CT values by a random monotone curve through the crop's quantiles: the darkest
share becomes air or lung, then fat, then a wide share of soft tissue (so most
edges are faint, as in CT), the brightest share bone or contrast. A body
outline with air around it (as for the dead leaves) and the scanner's blur
follow; the low-dose simulator then sees the slice as it sees a phantom. The
grey levels of MR and radiographs are not attenuation, so these slices teach
structure, not what any organ's CT value is.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import NDArray

from medviewer.errors import ModelError

SOURCES: tuple[tuple[str, str, str, float], ...] = (
    ("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm", "axial abdominal MR", 0.3),
    ("pydicom-data", "MR2_UNCR.dcm", "shoulder MR", 0.3),
    ("pydicom-data", "RG1_UNCR.dcm", "chest radiograph", 0.15),
    ("pydicom-data", "RG3_UNCR.dcm", "lower-leg radiograph", 0.1),
    ("deid-data", "animals/cat.dcm", "radiograph of a cat", 0.15),
)
"""(package, file, content, share of the slices) of the source images. The cross-sections (MR) get the larger
shares: their structure is nearer a CT slice's than a radiograph's overlapping shadows."""
PHOTO_SOURCES: tuple[tuple[str, str], ...] = (
    ("camera", "a photographer on a lawn"),
    ("astronaut", "a portrait"),
    ("cat", "a cat's head (Chelsea)"),
    ("coffee", "a cup of coffee"),
    ("rocket", "a rocket on its launch pad"),
    ("motorcycle_left", "a motorcycle"),
    ("coins", "coins"),
    ("moon", "the lunar surface"),
    ("brick", "a brick wall"),
    ("grass", "grass"),
    ("gravel", "gravel"),
    ("retina", "a fundus photograph of a retina"),
    ("immunohistochemistry", "a stained tissue section"),
)
"""(scikit-image ``data`` function, content) of the pictures bundled with scikit-image that ``--photos`` slices are
made from, drawn with equal chances: photographs, textures and two medical pictures of other kinds. Their grey levels
are reflectance, not attenuation: like the MR and radiograph slices, they teach the denoiser structure (edges,
texture, repeated patterns) and nothing about what a CT value means."""
EVALUATION_FILES: frozenset[str] = frozenset({
    "CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "693_UNCI.dcm", "693_UNCR.dcm", "693_J2KI.dcm", "693_J2KR.dcm",
    "explicit_VR-UN.dcm", "bad_sequence.dcm", "eCT_Supplemental.dcm",
})
"""The issues' evaluation slices: never a source."""
MAX_SIDE = 1024
"""Larger sources are reduced (by area averaging) to this longer side once, when loaded."""
CROP_SHARE = (0.35, 1.0)
"""Side of a crop as a share of the source's shorter side."""


def _source_path(package: str, name: str) -> str:
    if package == "deid-data":
        try:
            import deid_data
        except ImportError as exc:
            raise ModelError("image slices need the deid-data package (pip install deid-data)") from exc
        from pathlib import Path

        path = Path(deid_data.__file__).parent / "data" / name
        if not path.is_file():
            raise ModelError(f"image slice source {name} not found in deid-data")
        return str(path)
    from medviewer.training.evaluate_denoiser import find_test_file

    return find_test_file(name, "image slice source")


def _load(package: str, name: str) -> NDArray[np.float32]:
    """Grey levels of one source in [0, 1] (0.5-99.5 % percentiles), brighter = denser, longer side <= MAX_SIDE."""
    import pydicom

    try:
        ds = pydicom.dcmread(_source_path(package, name))
        arr = np.asarray(ds.pixel_array, dtype=np.float32)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - library boundary (STYLE.md section 4)
        raise ModelError(f"image slice source {name} cannot be read: {exc}") from exc
    if arr.ndim != 2:
        raise ModelError(f"image slice source {name} is not a single grey-level frame (shape {arr.shape})")
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":  # radiographs: make bone bright
        arr = arr.max() - arr
    return _grey_levels(arr)


def _grey_levels(arr: NDArray[np.float32]) -> NDArray[np.float32]:
    """``arr`` reduced to a longer side <= MAX_SIDE, stretched to [0, 1] and cleaned of its own noise."""
    from scipy import ndimage
    from skimage.restoration import denoise_nl_means, estimate_sigma
    from skimage.transform import downscale_local_mean

    f = math.ceil(max(arr.shape) / MAX_SIDE)
    if f > 1:
        arr = downscale_local_mean(arr, (f, f)).astype(np.float32)
    lo, hi = np.percentile(arr, [0.5, 99.5])
    grey = np.clip((arr - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    # The source's own noise (MR's most of all) would be structure to the denoiser, and the curve's steep air-to-fat
    # stretch would turn the noise floor of an MR background into speckle: remove it first.
    sigma = float(estimate_sigma(grey))
    if sigma > 0:
        grey = denoise_nl_means(grey, h=1.5 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)
    grey = ndimage.median_filter(grey, size=5)  # what non-local means leaves of it in dark, flat regions
    return np.clip(grey, 0.0, 1.0).astype(np.float32)


@functools.cache
def load_sources() -> tuple[NDArray[np.float32], ...]:
    """The :data:`SOURCES` images as grey levels in [0, 1], read once per process."""
    if any(name.rsplit("/", 1)[-1] in EVALUATION_FILES for _, name, _, _ in SOURCES):
        raise ModelError("an evaluation slice is listed as an image-slice source")
    return tuple(_load(package, name) for package, name, _, _ in SOURCES)


def _load_photo(name: str) -> NDArray[np.float32]:
    """Grey levels of one of scikit-image's bundled pictures (:data:`PHOTO_SOURCES`), as :func:`_load` gives them."""
    from skimage import data
    from skimage.color import rgb2gray

    try:
        arr = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
    except Exception as exc:  # noqa: BLE001 - library boundary (STYLE.md section 4)
        raise ModelError(f"photo source {name} cannot be read from scikit-image: {exc}") from exc
    grey = rgb2gray(arr[..., :3]) if arr.ndim == 3 else np.asarray(arr, np.float64)
    return _grey_levels(np.asarray(grey, np.float32))


@functools.cache
def load_photo_sources() -> tuple[NDArray[np.float32], ...]:
    """The :data:`PHOTO_SOURCES` pictures as grey levels in [0, 1], read once per process."""
    return tuple(_load_photo(name) for name, _ in PHOTO_SOURCES)


def ct_curve(rng: np.random.Generator, grey: NDArray[np.float32]) -> NDArray[np.float32]:
    """Map grey levels to HU by a random monotone piecewise-linear curve through their quantiles.

    Knots (share of the pixels below each -> HU): 0 -> air (-1000 to -900);
    the darkest 0-25 % -> up to lung (-850 to -700); a further 3-15 % -> fat
    (-120 to -60); a further 2-8 % -> the lower end of soft tissue (0-30), and from
    there to the brightest 2-12 % -> the rest of it (up to 45-80 HU, so most edges are faint, as in CT); the brightest -> bone or
    contrast (up to 600-1400 HU).
    """
    q_air = rng.uniform(0.0, 0.25)
    q_fat = q_air + rng.uniform(0.03, 0.15)
    q_soft = q_fat + rng.uniform(0.02, 0.08)
    q_bone = 1.0 - rng.uniform(0.02, 0.12)
    knots = np.quantile(grey, [0.0, q_air, q_fat, q_soft, q_bone, 1.0]).astype(np.float64)
    knots = knots + np.arange(len(knots)) * 1e-6  # strictly increasing for np.interp where quantiles tie
    hu = [
        rng.uniform(-1000.0, -900.0),
        rng.uniform(-850.0, -700.0),
        rng.uniform(-120.0, -60.0),
        rng.uniform(0.0, 30.0),
        rng.uniform(45.0, 80.0),
        rng.uniform(600.0, 1400.0),
    ]
    return np.interp(grey, knots, hu).astype(np.float32)


def image_slice(rng: np.random.Generator, size: int, pixel_mm: float, psf_mm: float | None = None,
                sources: tuple[NDArray[np.float32], ...] | None = None) -> NDArray[np.float32]:
    """One ``(size, size)`` slice in HU from a random crop of a random source image.

    ``rng`` (all randomness), ``size`` (pixels per side), ``pixel_mm`` (the body outline's size and the blur are
    in mm) and ``psf_mm`` (scanner blur, Gaussian sigma in mm; default the phantoms', 0 for none) are as for
    :func:`medviewer.training.dead_leaves.dead_leaves_slice`.

    Parameters
    ----------
    sources : tuple of arrays, optional
        Grey-level images in [0, 1], drawn with equal chances; default :func:`load_sources`, drawn with the
        shares of :data:`SOURCES`.
    """
    from skimage.transform import resize

    from medviewer.training.dead_leaves import body_outline, scanner_blur

    if size < 8 or not pixel_mm > 0:
        raise ValueError(f"size must be >= 8 and pixel_mm > 0, got {size}, {pixel_mm}")
    if sources is None:
        srcs, shares = load_sources(), np.array([w for *_, w in SOURCES])
    else:
        srcs, shares = sources, np.ones(len(sources))
    src = srcs[int(rng.choice(len(srcs), p=shares / shares.sum()))]
    side = max(8, int(min(src.shape) * rng.uniform(*CROP_SHARE)))
    y0 = int(rng.integers(src.shape[0] - side + 1))
    x0 = int(rng.integers(src.shape[1] - side + 1))
    crop = np.rot90(src[y0 : y0 + side, x0 : x0 + side], int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    grey = resize(np.ascontiguousarray(crop), (size, size), order=1, anti_aliasing=side > size).astype(np.float32)
    img = ct_curve(rng, grey)
    body, _ = body_outline(rng, size, pixel_mm)
    img[~body] = -1000.0
    return scanner_blur(img, pixel_mm, psf_mm)


__all__ = ["SOURCES", "PHOTO_SOURCES", "EVALUATION_FILES", "MAX_SIDE", "CROP_SHARE", "load_sources", "load_photo_sources",
           "ct_curve", "image_slice"]
