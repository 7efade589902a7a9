import numpy as np
import pytest

from medviewer.volume import Volume


def test_index_patient_round_trip_oblique():
    theta = np.deg2rad(30)
    row = np.array([np.cos(theta), np.sin(theta), 0.0])
    col = np.array([0.0, 0.0, -1.0])
    normal = np.cross(row, col)
    v = Volume(
        np.zeros((4, 5, 6), np.float32),
        spacing=(2.5, 0.7, 0.8),
        origin=(10.0, -20.0, 30.0),
        direction=np.stack([row, col, normal], axis=1),
    )
    idx = np.array([[0, 0, 0], [3, 4, 5], [1.5, 2.25, 0.5]])
    xyz = v.index_to_patient(idx)
    assert np.allclose(xyz[0], [10, -20, 30])
    # one step in i moves 0.8 mm along the row direction
    assert np.allclose(v.index_to_patient((0, 0, 1)) - xyz[0], 0.8 * row)
    assert np.allclose(v.index_to_patient((1, 0, 0)) - xyz[0], 2.5 * normal)
    assert np.allclose(v.patient_to_index(xyz), idx)


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        Volume(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError):
        Volume(np.zeros((2, 4, 5), np.float32), spacing=(0, 1, 1))


def test_with_voxels_keeps_geometry():
    v = Volume(np.zeros((2, 3, 4), np.float32), spacing=(3, 1, 1), origin=(1, 2, 3))
    w = v.with_voxels(np.ones((2, 3, 4), np.float32), derived_from="test")
    assert w.origin == v.origin and w.spacing == v.spacing
    assert w.metadata.derived_from == "test" and v.metadata.derived_from == ""
