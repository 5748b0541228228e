"""The built-in synthetic driving world: the project's embedded default data.

Procedural maps (:mod:`.road_network`), IDM traffic and pedestrians (:mod:`.agents`, :mod:`.idm`), an expert
driver (:mod:`.expert`), a step-able simulation and its 10 Hz logs (:mod:`.log`), scenes cut from logs in the
project's scene format (:mod:`.scenes`), split generation (:mod:`.generate`), camera frames (:mod:`.render`),
and pictures (:mod:`.bev`, :mod:`.video`). Heavy submodules are imported lazily by their users.
"""

from drive_jepa_core.world.generate import SPLIT_SEED_BASE, generate_split
from drive_jepa_core.world.log import WorldConfig, WorldLog, WorldSim, simulate_log
from drive_jepa_core.world.scenes import cut_scene, cut_scenes

__all__ = ["SPLIT_SEED_BASE", "WorldConfig", "WorldLog", "WorldSim", "cut_scene", "cut_scenes", "generate_split",
           "simulate_log"]
