"""Constants of NAVSIM's PDM scorer (PDMS v1.1, EPDMS v2) and of the PDM-Closed reference planner.

Every number follows shared/reference/navsim_metrics.md (section cited per constant), i.e. NAVSIM's
``pdm_scorer.py`` defaults (v1.1 tag ``0811876c274e`` and main ``0a380a9063d7``) and nuPlan's helpers. Shared by the
batch scorer, the per-trajectory reference scorer and PDM-Closed so that each number lives once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from drive_jepa_core.constants import NUM_SIM_POSES, SIM_DT
from drive_jepa_core.scene.format import MapLayer

VERSIONS = ("v1", "v2")

# --- horizons (§1, §3) -----------------------------------------------------------------------------------------------
NUM_STATES: int = NUM_SIM_POSES + 1  # 41 simulated states, t = 0 … 4.0 s
V1_OBSERVATION_FRAMES: int = 51  # v1 log replay: t = 0 … 5.0 s (TTC looks up to frame 49) (§3)
V2_OBSERVATION_FRAMES: int = NUM_STATES  # v2 log replay: t = 0 … 4.0 s (§3)
KEYFRAME_STEPS: int = 5  # 2 Hz keyframes at 10 Hz: traffic-light status held per 0.5 s (§3 "Red lights")
MAP_RADIUS: float = 100.0  # m, polygons within this distance of the ego centre (§3 "Drivable-area map")
# Our choice: the exact point-in-polygon grid spans this far from the ego centre (beyond it queries stay exact, via
# shapely); 4 s at 35 m/s plus the ego length stays inside.
POLYGON_GRID_HALF_EXTENT: float = 150.0  # m
ROUTE_ROADBLOCK_LOOKAHEAD: int = 30  # Dijkstra target: last of the next 30 route roadblocks (§3 "Centerline")

# --- map layers per predicate (§4) -----------------------------------------------------------------------------------
DRIVABLE_LAYERS = (MapLayer.ROADBLOCK, MapLayer.INTERSECTION, MapLayer.CARPARK_AREA)  # DRIVABLE_AREA is empty
LANE_LAYERS = (MapLayer.LANE, MapLayer.LANE_CONNECTOR)

# --- collisions, TTC (§5.1, §5.6) -------------------------------------------------------------------------------------
STOPPED_SPEED_THRESHOLD: float = 5e-2  # m/s, ego "stopped" and track "stopped" for NC (§5.1)
TTC_STOPPED_SPEED_THRESHOLD: float = 5e-3  # m/s, TTC skips contacts below this ego speed (§5.6)
AHEAD_ANGLE: float = math.radians(30.0)  # "ahead" ⇔ relative angle < 30° (§1)
BEHIND_ANGLE: float = math.radians(150.0)  # "behind" ⇔ relative angle > 150° (§1)
NC_AGENT_PENALTY: float = 0.0  # at-fault collision with VEHICLE / PEDESTRIAN / BICYCLE (§5.1)
NC_STATIC_PENALTY: float = 0.5  # at-fault collision with any other class (§5.1)
TTC_HORIZON: float = 1.0  # s; projections range(0, int(1.0 / 0.1), 3) (§5.6)
TTC_STEP: int = 3
TTC_PROJECTION_STEPS: tuple[int, ...] = tuple(range(0, round(TTC_HORIZON / SIM_DT), TTC_STEP))  # (0, 3, 6, 9)

# --- driving direction (§5.3) ----------------------------------------------------------------------------------------
DDC_HORIZON_STEPS: int = round(1.0 / SIM_DT)  # 10 -> windows of 11 samples
DDC_COMPLIANCE_THRESHOLD: float = 2.0  # m, W < 2 -> 1
DDC_VIOLATION_THRESHOLD: float = 6.0  # m, W < 6 -> 0.5, else 0

# --- ego progress (§5.5) ---------------------------------------------------------------------------------------------
PROGRESS_DISTANCE_THRESHOLD: float = 5.0  # m, normalise only when the best progress exceeds this

# --- lane keeping (§5.8) ---------------------------------------------------------------------------------------------
LANE_KEEPING_DEVIATION: float = 0.5  # m
LANE_KEEPING_STEPS: int = math.ceil(2.0 / SIM_DT)  # 20 consecutive counted steps


# --- aggregation weights (§6) ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PDMSWeights:
    """PDMS v1.1 = NC · DAC · (5 EP + 5 TTC + 2 C + 0 DDC) / 12 (§6.1)."""

    ep: float = 5.0
    ttc: float = 5.0
    c: float = 2.0


@dataclass(frozen=True)
class EPDMSWeights:
    """EPDMS v2 = NC · DAC · DDC · TLC · (5 EP + 5 TTC + 2 LK + 2 HC + 2 EC) / 16, EC dropped when NaN (§6.2)."""

    ep: float = 5.0
    ttc: float = 5.0
    lk: float = 2.0
    hc: float = 2.0
    ec: float = 2.0


PDMS_WEIGHTS = PDMSWeights()
EPDMS_WEIGHTS = EPDMSWeights()
# Columns the v2 human false-positive filter looks at (§6.2); EC is not among them.
HUMAN_FILTER_COLUMNS = ("nc", "dac", "ddc", "tlc", "ep", "ttc", "lk", "hc")


# --- PDM-Closed reference planner (§5.5) -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PDMClosedParameters:
    """PDM-Closed proposal generation (navsim_metrics.md §5.5; NAVSIM ``pdm_closed_planner`` config)."""

    lateral_offsets: tuple[float, ...] = (-1.0, 0.0, 1.0)  # m, centerline and ±1 m
    speed_fractions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)  # × lane speed limit
    default_speed_limit: float = 15.0  # m/s when the lane has none
    min_gap: float = 1.0  # m, IDM s0
    headway: float = 1.5  # s, IDM T
    accel_max: float = 1.5  # m/s², IDM a
    decel_max: float = 3.0  # m/s², IDM b
    exponent: float = 10.0  # IDM δ (value as given in §5.5)
    accel_clip: tuple[float, float] = (-3.0, 1.5)  # m/s²
    leader_update_steps: int = 2  # leader recomputed every 2 steps
    max_agents: tuple[tuple[str, int], ...] = (
        ("VEHICLE", 50), ("PEDESTRIAN", 25), ("BICYCLE", 10), ("STATIC", 50))  # observation caps at t0
    observation_radius: float = 100.0  # m, objects detected at t0 within this radius
    path_resample: float = 0.5  # m, spacing of the resampled proposal paths (our choice)
    path_extension: float = 200.0  # m, straight extension past the centerline end (our choice, see pdm_closed.py)
    path_behind: float = 10.0  # m of path kept behind the ego's projection (our choice)
    path_ahead: float = 250.0  # m of path kept ahead of it (our choice; 4 s at 35 m/s is 140 m)


PDM_CLOSED_PARAMETERS = PDMClosedParameters()
