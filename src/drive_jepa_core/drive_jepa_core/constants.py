"""Numbers that define behaviour, each defined once with the source it follows.

Frames and units follow NAVSIM/nuPlan: metres, seconds, radians; ego reference point = rear-axle centre,
x forward, y left, heading counter-clockwise. See shared/reference/navsim_metrics.md §1.
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------------------------------------------------
# Time grids (NAVSIM: 8 poses at 0.5 s; simulation at 0.1 s with 41 states; 1.5 s of history)
# --------------------------------------------------------------------------------------------------------------------
SIM_DT: float = 0.1  # s, simulation / scene timeline step (navsim_metrics.md §1)
NUM_SIM_POSES: int = 40  # simulated steps after t0 -> 41 states (navsim_metrics.md §1)
TRAJ_DT: float = 0.5  # s, planner output spacing (drive_jepa.md §2.3)
NUM_TRAJ_POSES: int = 8  # planner output poses, t = 0.5 … 4.0 s (drive_jepa.md §2.3)
HISTORY_SECONDS: float = 1.5  # logged ego history used by HC (navsim_metrics.md §3)
SCENE_FUTURE_SECONDS: float = 5.0  # v1 TTC reads observation frames up to 5.0 s (navsim_metrics.md §3)
CAMERA_FRAME_GAP: float = 0.5  # s, the model sees frames at t-0.5 s and t (drive_jepa.md §2.1)


# --------------------------------------------------------------------------------------------------------------------
# Ego vehicle: nuPlan "Pacifica" (navsim_metrics.md §1)
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VehicleParameters:
    width: float = 2.297
    front_length: float = 4.049  # rear axle -> front bumper
    rear_length: float = 1.127  # rear axle -> rear bumper
    wheel_base: float = 3.089
    height: float = 1.777

    @property
    def length(self) -> float:
        return self.front_length + self.rear_length

    @property
    def half_length(self) -> float:
        return self.length / 2.0

    @property
    def half_width(self) -> float:
        return self.width / 2.0

    @property
    def rear_axle_to_center(self) -> float:
        """Rear axle -> geometric centre (1.461 m)."""
        return self.front_length - self.half_length


EGO_VEHICLE = VehicleParameters()


# --------------------------------------------------------------------------------------------------------------------
# Driving command. NAVSIM stores 4 slots; OpenScene documents (left, straight, right); the 4th is unknown
# (drive_jepa.md §2.2). We use the first three and keep the 4th slot zero.
# --------------------------------------------------------------------------------------------------------------------
COMMAND_LEFT, COMMAND_STRAIGHT, COMMAND_RIGHT = 0, 1, 2
COMMAND_NAMES = ("left", "straight", "right")
COMMAND_DIM = 4


# --------------------------------------------------------------------------------------------------------------------
# Image preprocessing (drive_jepa.md §2.1)
# --------------------------------------------------------------------------------------------------------------------
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_WIDTH = 512
DEFAULT_IMAGE_HEIGHT = 256



# --------------------------------------------------------------------------------------------------------------------
# Published messages never carry NaN: a comfort score that does not exist (no momentum this cycle) is published as
# this value (drive_jepa_msgs CandidateTrajectory.msg / SelectionState.msg); the node and the replay bag writer use it.
# --------------------------------------------------------------------------------------------------------------------
COMFORT_NOT_AVAILABLE: float = -1.0
