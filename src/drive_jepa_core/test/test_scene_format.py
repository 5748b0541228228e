"""Scene format v1: round trip and load-time errors that name the field."""

import json

import numpy as np
import pytest

from drive_jepa_core.scene import (
    CameraCalibration,
    Scene,
    SceneFormatError,
    empty_agent_fields,
    empty_map_fields,
    load_scene,
    save_scene,
)


def _tiny_scene(with_frames: bool = True) -> Scene:
    t = np.round(np.arange(-15, 51) * 0.1, 10)
    x = 10.0 * (t + 1.5)
    ego = np.zeros((len(t), 7))
    ego[:, 0], ego[:, 3] = x, 10.0
    calib = CameraCalibration("front", 32, 16, np.array([[20.0, 0, 16], [0, 20.0, 8], [0, 0, 1]]), np.eye(4))
    cam_t = np.arange(-3, 9) * 0.5
    frames = np.random.default_rng(0).integers(0, 255, (len(cam_t), 16, 32, 3), dtype=np.uint8)
    return Scene(token="tok", log_name="log", split="test", source="synthetic", command=1, timestamps=t,
                 t0_index=15, ego_states=ego, **empty_agent_fields(len(t)), **empty_map_fields(), camera=calib,
                 camera_timestamps=cam_t, camera_frames=frames if with_frames else None, extra={"seed": 3})


def test_round_trip(tmp_path):
    scene = _tiny_scene()
    path = save_scene(scene, tmp_path / "tok")
    loaded = load_scene(path)
    np.testing.assert_array_equal(loaded.ego_states, scene.ego_states)
    np.testing.assert_array_equal(loaded.camera_frames, scene.camera_frames)  # PNG is lossless
    assert loaded.extra == {"seed": 3} and loaded.command_name == "straight"
    np.testing.assert_allclose(loaded.future_trajectory()[:, 0], 5.0 * np.arange(1, 9))
    assert load_scene(path, load_frames=False).camera_frames is None


def _rewrite(path, mutate):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    mutate(arrays)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_missing_field_is_named(tmp_path):
    path = save_scene(_tiny_scene(False), tmp_path / "a.npz")
    _rewrite(path, lambda a: a.pop("agent_valid"))
    with pytest.raises(SceneFormatError, match="missing field 'agent_valid'"):
        load_scene(path)


def test_wrong_shape_is_named(tmp_path):
    path = save_scene(_tiny_scene(False), tmp_path / "a.npz")
    _rewrite(path, lambda a: a.__setitem__("ego_states", a["ego_states"][:, :5].copy()))
    with pytest.raises(SceneFormatError, match="field 'ego_states' must have shape"):
        load_scene(path)


def test_unknown_version(tmp_path):
    path = save_scene(_tiny_scene(False), tmp_path / "a.npz")

    def bump(a):
        meta = json.loads(bytes(a["meta_json"]))
        meta["format_version"] = 99
        a["meta_json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)

    _rewrite(path, bump)
    with pytest.raises(SceneFormatError, match="unknown scene format_version 99"):
        load_scene(path)


def test_not_a_scene_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(SceneFormatError, match=r"bad\.npz"):
        load_scene(bad)


def test_png_cache_encodes_shared_frames_once(tmp_path):
    first = _tiny_scene()
    first.extra = {"log_time": 10.0}
    second = _tiny_scene()
    second.extra = {"log_time": 10.5}  # same log, 0.5 s later: 11 of its 12 frames are the first scene's
    second.camera_frames = np.concatenate([first.camera_frames[1:], first.camera_frames[-1:][:, ::-1]])
    cache: dict = {}
    save_scene(first, tmp_path / "a", png_cache=cache)
    save_scene(second, tmp_path / "b", png_cache=cache)
    assert len(cache) == 13
    np.testing.assert_array_equal(load_scene(tmp_path / "b.npz").camera_frames, second.camera_frames)
