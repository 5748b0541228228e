"""The scene format shared by every producer (world, rosbag import) and consumer (training, evaluation)."""

from drive_jepa_core.scene.format import (  # noqa: F401
    AGENT_STATE_FIELDS,
    DYNAMIC_AGENT_TYPES,
    EGO_STATE_FIELDS,
    SCENE_FORMAT_VERSION,
    AgentType,
    CameraCalibration,
    MapLayer,
    Scene,
    SceneFormatError,
    TrafficLightStatus,
    empty_agent_fields,
    empty_map_fields,
    list_scenes,
    load_scene,
    save_scene,
)
