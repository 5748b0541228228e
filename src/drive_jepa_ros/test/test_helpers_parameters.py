"""drive_jepa_ros.parameters without ROS: validation, typed settings and the camera geometry."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from drive_jepa_core.world.render import default_front_camera
from drive_jepa_ros.parameters import (
    CONFIGURE,
    DEFAULTS,
    LIVE,
    PARAMETER_SPECS,
    PARAMETERS,
    SETTINGS_FIELDS,
    NodeSettings,
    camera_info_intrinsics,
    camera_sensor2ego,
    check_parameter_change,
    check_value,
    descriptor,
    intrinsics_matrix,
)


def test_every_parameter_has_a_typed_setting_and_a_description() -> None:
    assert sorted(SETTINGS_FIELDS) == sorted(s.name.replace(".", "_") for s in PARAMETERS)
    assert len(PARAMETER_SPECS) == len(PARAMETERS)
    for spec in PARAMETERS:
        assert spec.description and spec.applies in (CONFIGURE, LIVE)
        assert check_value(spec, spec.default) is None, spec.name


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("odometry_max_age", 0.0, "must be > 0"),
    ("odometry_max_age", -1.0, "must be > 0"),
    ("odometry_max_age", 6.0, "must be <= 5"),
    ("odometry_max_age", math.nan, "finite"),
    ("odometry_max_age", "x", "must be a float"),
    ("frame_gap_tolerance", 0.26, "<= 0.25"),
    ("default_command", 3, "<= 2"),
    ("default_command", True, "must be a int"),  # bool is not an int parameter
    ("backend", "caffe", "one of torch, onnxruntime, tensorrt"),
    ("image_transport", "theora", "one of raw, compressed"),
    ("device", "gpu0", "auto, cpu, cuda or cuda:N"),
    ("momentum.score_weight", 1.5, "<= 1"),
])
def test_bad_values_have_a_reason(name: str, value, reason: str) -> None:
    message = check_value(PARAMETER_SPECS[name], value)
    assert message is not None and reason in message and name in message


@pytest.mark.parametrize("value", ["cpu", "cuda", "cuda:1", "auto"])
def test_devices(value: str) -> None:
    assert check_value(PARAMETER_SPECS["device"], value) is None


def test_integers_are_accepted_for_doubles() -> None:
    assert check_value(PARAMETER_SPECS["odometry_max_age"], 1) is None


def test_changes_while_configured() -> None:
    assert check_parameter_change({"frame_gap_tolerance": 0.08}, configured=True) is None  # live
    reason = check_parameter_change({"backend": "onnxruntime"}, configured=True)
    assert reason is not None and "backend" in reason and "clean up" in reason
    assert check_parameter_change({"backend": "onnxruntime"}, configured=False) is None
    assert check_parameter_change({"use_sim_time": True}, configured=True) is None  # not ours
    # a bad value is refused before the "configured" rule
    assert "one of" in check_parameter_change({"backend": "x"}, configured=True)


def test_settings_from_values() -> None:
    with pytest.raises(ValueError, match="model_path is empty"):
        NodeSettings.from_values(DEFAULTS)
    settings = NodeSettings.from_values({**DEFAULTS, "model_path": "m.safetensors", "camera.width": 640,
                                         "momentum.score_weight": 1})
    assert settings.camera_width == 640 and settings.momentum_score_weight == 1.0
    assert isinstance(settings.momentum_score_weight, float)
    assert settings.momentum.comfort_weight == 0.0
    assert settings.subscribed_image_topic == "~/input/image"
    compressed = NodeSettings.from_values({**DEFAULTS, "model_path": "m", "image_transport": "compressed",
                                           "image_topic": "/cam/image_raw/"})
    assert compressed.subscribed_image_topic == "/cam/image_raw/compressed"
    with pytest.raises(ValueError, match="frame_gap_tolerance"):
        NodeSettings.from_values({**DEFAULTS, "model_path": "m", "frame_gap_tolerance": 1.0})


def test_default_camera_is_the_built_in_world_camera() -> None:
    settings = NodeSettings.from_values({**DEFAULTS, "model_path": "m"})
    width, height, K = settings.parameter_intrinsics()
    world = default_front_camera()
    assert (width, height) == (world.width, world.height)
    np.testing.assert_allclose(K, world.intrinsics)
    np.testing.assert_allclose(settings.camera_sensor2ego(), world.sensor2ego, atol=1e-12)
    np.testing.assert_allclose(settings.calibration(width, height, K).ego2image(), world.ego2image(), atol=1e-9)


def test_extrinsics_by_hand() -> None:
    # level camera 2 m forward, 1 m up: optical z along ego x, optical x along ego -y, optical y along ego -z
    T = camera_sensor2ego((2.0, 0.0, 1.0), (0.0, 0.0, 0.0))
    np.testing.assert_allclose(T[:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-15)
    np.testing.assert_allclose(T[:3, 3], [2, 0, 1])
    # looking left (yaw +90 deg): the optical axis is ego +y
    T = camera_sensor2ego((0.0, 0.0, 0.0), (0.0, 0.0, math.pi / 2))
    np.testing.assert_allclose(T[:3, 2], [0, 1, 0], atol=1e-15)
    # pitched down 10 deg: the optical axis points forward and down
    T = camera_sensor2ego((0.0, 0.0, 0.0), (0.0, math.radians(10), 0.0))
    np.testing.assert_allclose(T[:3, 2], [math.cos(math.radians(10)), 0, -math.sin(math.radians(10))], atol=1e-15)
    # a point 10 m ahead on the camera axis projects to the principal point
    K = intrinsics_matrix(500.0, 500.0, 320.0, 240.0)
    P = K @ np.linalg.inv(camera_sensor2ego((1.0, 0.0, 1.5), (0.0, 0.0, 0.0)))[:3, :]
    uvw = P @ np.array([11.0, 0.0, 1.5, 1.0])
    np.testing.assert_allclose(uvw[:2] / uvw[2], [320.0, 240.0])
    with pytest.raises(ValueError):
        camera_sensor2ego((0.0, 0.0, math.nan), (0.0, 0.0, 0.0))


def test_camera_info_intrinsics() -> None:
    msg = SimpleNamespace(width=640, height=480, k=[500.0, 0, 320, 0, 510, 240, 0, 0, 1])
    width, height, K = camera_info_intrinsics(msg)
    assert (width, height) == (640, 480) and K[1, 1] == 510.0
    for bad in (SimpleNamespace(width=0, height=480, k=msg.k),
                SimpleNamespace(width=640, height=480, k=[0.0] * 9),
                SimpleNamespace(width=640, height=480, k=[500.0, 0, 320, 0, 510, 240, 0, 0, 1, 0])):
        with pytest.raises(ValueError):
            camera_info_intrinsics(bad)


def test_descriptors() -> None:
    from rcl_interfaces.msg import ParameterType

    age = descriptor(PARAMETER_SPECS["odometry_max_age"])
    assert age.type == ParameterType.PARAMETER_DOUBLE
    assert (age.floating_point_range[0].from_value, age.floating_point_range[0].to_value) == (0.0, 5.0)
    assert "(0, 5]" in age.additional_constraints and "immediately" in age.additional_constraints
    command = descriptor(PARAMETER_SPECS["default_command"])
    assert (command.integer_range[0].from_value, command.integer_range[0].to_value, command.integer_range[0].step) \
        == (0, 2, 1)
    backend = descriptor(PARAMETER_SPECS["backend"])
    assert backend.type == ParameterType.PARAMETER_STRING and "unconfigured" in backend.additional_constraints
    assert descriptor(PARAMETER_SPECS["autostart"]).type == ParameterType.PARAMETER_BOOL


def test_pairing_defaults_come_from_the_core_pairing() -> None:
    """The node and the offline replay share one input pairing: the parameter defaults are PairingConfig's."""
    from drive_jepa_core.replay.pairing import PairingConfig

    core = PairingConfig()
    names = ("frame_gap_tolerance", "frame_buffer_size", "odometry_max_age", "odometry_buffer_size",
             "acceleration_window", "time_jump_threshold")
    assert {n: PARAMETER_SPECS[n].default for n in names} == {n: getattr(core, n) for n in names}
    settings = NodeSettings.from_values({**DEFAULTS, "model_path": "m"})
    assert settings.pairing == core
    live = NodeSettings.from_values({**DEFAULTS, "model_path": "m", "frame_gap_tolerance": 0.1,
                                     "acceleration_window": 0.0})
    assert live.pairing == PairingConfig(frame_gap_tolerance=0.1, acceleration_window=0.0)
