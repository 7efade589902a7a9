"""Test configuration shared by every test module."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MEDVIEWER_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "medviewer"))

import pydicom.config  # noqa: E402
import pytest  # noqa: E402

# A misspelled DICOM keyword must fail, not silently do nothing (STYLE.md section 6).
pydicom.config.settings.writing_validation_mode = pydicom.config.RAISE
pydicom.config.INVALID_KEYWORD_BEHAVIOR = "RAISE"

try:  # keep torch from fighting the other tests for the 2 CI cores
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(1234)
