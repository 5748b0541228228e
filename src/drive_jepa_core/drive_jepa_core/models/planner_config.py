"""Every number that defines the Drive-JEPA planners, once, with its source.

Sources: ``shared/reference/drive_jepa.md`` (§ numbers below), which paraphrases the upstream ``drive_jepa_config.py``
[v1] and iPad's ProFormer. Where this project deliberately departs from the upstream code, the field says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drive_jepa_core.constants import EGO_VEHICLE, NUM_TRAJ_POSES
from drive_jepa_core.preprocess import EGO_STATUS_DIM

POSE_DIM = 3  # (x, y, heading) in the current rear-axle frame (drive_jepa.md §2.3)
# The perception-free model uses the 8 informative ego-status entries: velocity, acceleration, command (§2.2, §8).
# In the (11,) layout [x, y, heading, vx, vy, ax, ay, command(4)] these are indices 3..10; the pose is (0, 0, 0).
EGO_STATUS_INFORMATIVE = slice(3, EGO_STATUS_DIM)
# Units of the trajectory heads' raw output (x m, y m, heading rad). Upstream decodes metres directly (scale 1) and
# trains ~100k steps; at a CPU budget of a few hundred Adam steps the last Linear after LayerNorm'd features cannot
# grow to 30-40 m, and every proposal saturated near 9 m ahead. Scaling the output fixes that without changing the
# loss (still L1 in metres). Checkpoints saved before this field existed load with LEGACY_POSE_SCALE.
DEFAULT_POSE_SCALE = (10.0, 5.0, 1.0)
LEGACY_POSE_SCALE = (1.0, 1.0, 1.0)


def _check_pose_scale(owner: str, scale: tuple[float, ...]) -> None:
    if len(scale) != POSE_DIM or not all(float(s) > 0 for s in scale):
        raise ValueError(f"{owner}.pose_scale must be {POSE_DIM} positive numbers (x, y, heading), got {scale}")


@dataclass(frozen=True)
class PlannerLossWeights:
    """Loss weights of the proposal planner (drive_jepa.md §5, checklist §13: 1, 0.5, 0.1 discount, 1, 2, 1)."""

    trajectory: float = 1.0  # `trajectory_weight`, multiplies the discounted imitation + MTD sum
    iteration_discount: float = 0.1  # λ = `prev_weight`: iteration i of I weighs λ^(I-1-i); the last weighs 1
    pseudo_teacher: float = 0.5  # MTD term, added to the imitation term inside each iteration
    score: float = 1.0  # BCE of the final-score logit against the simulated (E)PDMS
    mapping: float = 2.0  # BCE of the proposal-centric on-road / on-route head
    # The reference's key-agent head has a validity BCE (weight 1) and a corner L1 (0.1). This project keeps a
    # per-waypoint collision logit (the validity part) with the same weight and drops the corner regression.
    collision: float = 1.0


@dataclass(frozen=True)
class PlannerConfig:
    """Proposal-centric planner (iPad ProFormer + V-JEPA encoder + MTD), drive_jepa.md §4 and §5."""

    # --- proposals and tokens (§4) ---
    num_proposals: int = 32  # `proposal_num` (iPad: 64)
    num_poses: int = NUM_TRAJ_POSES  # 8 poses at 0.5 s
    num_iterations: int = 4  # `ref_num`: ONE shared refiner layer applied 4 times
    # --- widths (§3, §4) ---
    d_model: int = 256  # `tf_d_model`; encoder tokens are projected D -> d_model (1024 -> 256)
    d_ffn: int = 1024  # `tf_d_ffn`
    num_heads: int = 8  # `tf_num_head`, both attentions
    dropout: float = 0.0  # `tf_dropout`
    head_hidden: int = 1024  # hidden width of every head MLP (Linear-LN-ReLU-Linear-LN-ReLU-Linear)
    # --- token-grid deformable self-attention (§4.2 a) ---
    self_attn_points: int = 4  # `num_points` per head
    # Reference point of token (p, t): its own waypoint, ((x, y) + r) / 2r on the (waypoint, proposal) grid, with
    # r = 32 m from `point_cloud_range` [-32, 32]. iPad's choice, kept ("waypoint"); "grid" uses the token's own
    # (t, p) cell instead.
    self_attn_reference: str = "waypoint"
    self_attn_range: float = 32.0
    # --- waypoint-anchored image cross-attention (§4.2 b) ---
    cross_attn_points: int = 1  # learned sampling points per anchor per head (16 anchors x 1 point = 16)
    # Ego box around each waypoint: Pacifica half extents + the reference's margins (2.588+0.25, 1.1485+0.1).
    box_half_length: float = EGO_VEHICLE.half_length + 0.25  # 2.838 m
    box_half_width: float = EGO_VEHICLE.half_width + 0.1  # 1.2485 m
    rear_axle_to_center: float = EGO_VEHICLE.rear_axle_to_center  # 1.461 m
    # Anchor heights, linspace(-2, 6, 4) from `point_cloud_range` z and `num_points_in_pillar=4`. Upstream these were
    # (quirk) lidar-frame heights used with rear-axle waypoints; here they are heights in the ego (rear-axle, z up)
    # frame that ego2image expects. Upstream also paired corner k with height k (4 distinct anchors); here every
    # corner x height pair is its own anchor: 4 x 4 = 16 distinct anchors.
    anchor_heights: tuple[float, ...] = (-2.0, 2.0 / 3.0, 10.0 / 3.0, 6.0)
    min_depth: float = 1e-5  # m, a projected point counts as in front of the camera above this depth (§4.2 b)
    # --- heads (§4.3) ---
    # The proposal update: upstream decodes absolute poses from every iteration's tokens (False). True adds the
    # decoded value to the previous iteration's (detached) poses instead, DETR-style.
    residual_refinement: bool = False
    pose_scale: tuple[float, float, float] = DEFAULT_POSE_SCALE  # raw head output x this = (m, m, rad)
    # --- ego status (§2.2) ---
    ego_status_dim: int = EGO_STATUS_DIM
    # --- optimisation (§3, §10) ---
    encoder_lr_scale: float = 0.1  # encoder LR = 0.1 x planner LR (1e-5 vs 1e-4)
    loss: PlannerLossWeights = field(default_factory=PlannerLossWeights)
    max_pseudo_teachers: int = 4  # MTD: up to 4 pseudo-teachers drawn per sample per step (§6.3)

    def __post_init__(self) -> None:
        positive = ("num_proposals", "num_poses", "num_iterations", "d_model", "d_ffn", "num_heads", "head_hidden",
                    "self_attn_points", "cross_attn_points", "ego_status_dim", "max_pseudo_teachers")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"PlannerConfig.{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by num_heads {self.num_heads}")
        if self.d_model % 2:
            raise ValueError(f"d_model {self.d_model} must be even (half row, half column position embedding)")
        if self.self_attn_reference not in ("waypoint", "grid"):
            raise ValueError(f"self_attn_reference must be 'waypoint' or 'grid', got {self.self_attn_reference!r}")
        if not self.anchor_heights or len(set(self.anchor_heights)) != len(self.anchor_heights):
            raise ValueError(f"anchor_heights must be non-empty and distinct, got {self.anchor_heights}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        _check_pose_scale("PlannerConfig", self.pose_scale)

    @property
    def num_tokens(self) -> int:
        """Waypoint tokens, ``Np * M`` (token index ``p * M + t``)."""
        return self.num_proposals * self.num_poses

    @property
    def num_anchors(self) -> int:
        """Distinct 3-D anchors per waypoint token: 4 box corners x len(anchor_heights)."""
        return 4 * len(self.anchor_heights)


@dataclass(frozen=True)
class PerceptionFreeConfig:
    """The Sec. 3.2 "simple decoder" baseline, drive_jepa.md §8 (train script values)."""

    num_poses: int = NUM_TRAJ_POSES
    num_queries: int = NUM_TRAJ_POSES  # one learned query per waypoint
    d_model: int = 256
    num_heads: int = 8
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    d_ffn: int = 1024
    dropout: float = 0.0  # `tf_dropout=0.0` in the train script
    head_hidden: int = 1024  # Linear(256->1024) -> ReLU -> Linear(1024->3)
    pool: int = 2  # AvgPool2d(2, 2): 16x32 -> 8x16 = 128 image tokens
    ego_status_dim: int = EGO_STATUS_INFORMATIVE.stop - EGO_STATUS_INFORMATIVE.start  # 8
    length_norm_alpha: float = 5.0  # loss weight 1 / (alpha + GT arc length)
    pose_scale: tuple[float, float, float] = DEFAULT_POSE_SCALE  # x, y in these metres; heading stays tanh * pi

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by num_heads {self.num_heads}")
        if self.num_queries not in (1, self.num_poses):
            raise ValueError(f"num_queries must be 1 (one query decodes all poses) or num_poses={self.num_poses}")
        if self.pool <= 0:
            raise ValueError(f"pool must be positive, got {self.pool}")
        _check_pose_scale("PerceptionFreeConfig", self.pose_scale)
