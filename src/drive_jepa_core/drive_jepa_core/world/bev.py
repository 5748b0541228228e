"""Bird's-eye-view picture of a scene (matplotlib, Agg): map layers, route, lights, agents, ego, expert future and
optional extra trajectories (e.g. planner proposals coloured by score).

Drawn in the ego frame at t0 with forward pointing up (image x = -y_ego, image y = x_ego).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drive_jepa_core.constants import EGO_VEHICLE
from drive_jepa_core.geometry import box_corners, ego_corners
from drive_jepa_core.scene.format import AgentType, MapLayer, Scene, TrafficLightStatus

BEV_FORWARD = (-25.0, 65.0)  # m behind / ahead of the ego shown
BEV_LATERAL = 40.0  # m each side
LAYER_COLORS = {MapLayer.ROADBLOCK: "#cfcfcf", MapLayer.INTERSECTION: "#b8b8b8", MapLayer.CARPARK_AREA: "#e2d5b0"}
AGENT_COLORS = {AgentType.VEHICLE: "#3b6fb6", AgentType.PEDESTRIAN: "#e07b00", AgentType.BICYCLE: "#2ca02c"}
LIGHT_COLORS = {TrafficLightStatus.GREEN: "#2ca02c", TrafficLightStatus.YELLOW: "#f2c200",
                TrafficLightStatus.RED: "#d62728", TrafficLightStatus.UNKNOWN: "#7f7f7f"}
ROUTE_COLOR = "#7fb3ff"
EGO_COLOR = "#d62728"


def _to_plot(xy: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """World ``(..., 2)`` -> plot coordinates (forward up)."""
    d = np.asarray(xy, dtype=np.float64)[..., :2] - origin[:2]
    c, s = np.cos(origin[2]), np.sin(origin[2])
    x_loc = c * d[..., 0] + s * d[..., 1]
    y_loc = -s * d[..., 0] + c * d[..., 1]
    return np.stack([-y_loc, x_loc], axis=-1)


def _local_to_plot(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    return np.stack([-xy[..., 1], xy[..., 0]], axis=-1)


def _visible(pts: np.ndarray, pad: float = 5.0) -> bool:
    return bool(np.any((np.abs(pts[:, 0]) < BEV_LATERAL + pad) & (pts[:, 1] > BEV_FORWARD[0] - pad)
                       & (pts[:, 1] < BEV_FORWARD[1] + pad)))


def plot_scene_bev(scene: Scene, path: str | Path, trajectories: np.ndarray | None = None,
                   scores: np.ndarray | None = None, title: str | None = None, dpi: int = 110) -> Path:
    """Write a BEV PNG of ``scene`` at t0 to ``path``.

    Args:
        trajectories: optional ``(N, M, >=2)`` poses in the t0 rear-axle frame (planner output frame).
        scores: optional ``(N,)`` values colouring ``trajectories`` (viridis, with a colour bar).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Polygon

    if trajectories is not None:
        trajectories = np.asarray(trajectories, dtype=np.float64)
        if trajectories.ndim != 3 or trajectories.shape[2] < 2:
            raise ValueError(f"trajectories must have shape (N, M, >=2), got {trajectories.shape}")
        if scores is not None and np.asarray(scores).shape != (trajectories.shape[0],):
            raise ValueError(f"scores must have shape ({trajectories.shape[0]},), got {np.asarray(scores).shape}")
    origin = scene.ego_pose
    t0 = scene.t0_index
    fig = Figure(figsize=(7.0, 7.0 * (BEV_FORWARD[1] - BEV_FORWARD[0]) / (2 * BEV_LATERAL)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.92))
    ax.set_facecolor("#9dbf8a")  # verge / grass
    # --- map polygons
    for layer in (MapLayer.CARPARK_AREA, MapLayer.ROADBLOCK, MapLayer.INTERSECTION):
        for poly, lay in zip(scene.map_polygons, scene.map_polygon_layers, strict=True):
            if lay != layer:
                continue
            pts = _to_plot(poly, origin)
            if _visible(pts):
                ax.add_patch(Polygon(pts, closed=True, facecolor=LAYER_COLORS[layer], edgecolor="none", zorder=1))
    route_lanes = set(int(i) for i in scene.route_lane_ids())
    light_of = {int(lid): int(st) for lid, st in
                zip(scene.traffic_light_lane_ids, scene.traffic_light_status[t0], strict=True)}
    for i, lid in enumerate(scene.lane_ids):
        lid = int(lid)
        center = _to_plot(scene.lane_centerlines[i], origin)
        if not _visible(center):
            continue
        left = _to_plot(scene.lane_left_boundaries[i], origin)
        right = _to_plot(scene.lane_right_boundaries[i], origin)
        if lid in route_lanes:
            ax.add_patch(Polygon(np.concatenate([left, right[::-1]]), closed=True, facecolor=ROUTE_COLOR,
                                 alpha=0.35 if not scene.lane_is_connector[i] else 0.15, edgecolor="none", zorder=2))
        if scene.lane_is_connector[i]:
            color = LIGHT_COLORS[TrafficLightStatus(light_of.get(lid, TrafficLightStatus.UNKNOWN))]
            ax.plot(*center.T, color=color, lw=0.8, alpha=0.8, zorder=3)
            ax.plot(*center[:4].T, color=color, lw=3.0, zorder=4)  # stop-line end shows the light
        else:
            ax.plot(*left.T, color="white", lw=0.8, zorder=3)
            ax.plot(*right.T, color="white", lw=0.8, zorder=3)
            ax.plot(*center.T, color="#8a8a8a", lw=0.5, ls=(0, (4, 4)), zorder=3)
    # --- agents at t0 with their past
    for a in range(len(scene.agent_ids)):
        if not scene.agent_valid[t0, a]:
            continue
        x, y, h = scene.agent_states[t0, a, :3]
        length, width = scene.agent_sizes[a, :2]
        corners = _to_plot(box_corners(np.array([x, y]), h, length, width), origin)
        if not _visible(corners):
            continue
        atype = int(scene.agent_types[a])
        color = AGENT_COLORS.get(AgentType(atype), "#555555")
        moving = np.hypot(*scene.agent_states[t0, a, 3:5]) > 0.2
        ax.add_patch(Polygon(corners, closed=True, facecolor=color if moving else "#6b7f99", edgecolor="black",
                             lw=0.5, zorder=6))
        past = scene.agent_valid[: t0 + 1, a]
        if past.sum() > 1 and moving:
            ax.plot(*_to_plot(scene.agent_states[: t0 + 1, a][past, :2], origin).T, color=color, lw=1.0, zorder=5)
        if atype != AgentType.PEDESTRIAN:
            nose = _to_plot(np.array([[x, y], [x + 0.5 * length * np.cos(h), y + 0.5 * length * np.sin(h)]]), origin)
            ax.plot(*nose.T, color="white", lw=0.8, zorder=7)
    # --- expert future and history of the ego
    ego_xy = _to_plot(scene.ego_states[:, :2], origin)
    ax.plot(*ego_xy[: t0 + 1].T, color="#444444", lw=1.5, zorder=8)
    ax.plot(*ego_xy[t0:].T, color="black", lw=2.0, zorder=9, label="expert future")
    ax.plot(*ego_xy[t0 + 5:: 5].T, "o", color="black", ms=3, zorder=9)
    # --- extra trajectories
    if trajectories is not None:
        from matplotlib import colormaps
        from matplotlib.colors import Normalize

        cmap = colormaps["viridis"]
        norm = None
        if scores is not None:
            sc = np.asarray(scores, dtype=np.float64)
            lo, hi = float(np.nanmin(sc)), float(np.nanmax(sc))
            if hi - lo < 1e-6:  # all equal: centre a unit range on the value
                lo, hi = lo - 0.5, hi + 0.5
            norm = Normalize(vmin=lo, vmax=hi)
            order = np.argsort(sc)
        else:
            order = np.arange(len(trajectories))
        for n in order:
            pts = _local_to_plot(np.concatenate([np.zeros((1, 2)), trajectories[n, :, :2]]))
            color = cmap(norm(scores[n])) if norm is not None else cmap(n / max(len(trajectories) - 1, 1))
            ax.plot(*pts.T, color=color, lw=1.2, alpha=0.9, zorder=10)
            ax.plot(*pts[1:].T, ".", color=color, ms=3, zorder=10)
        if norm is not None:
            from matplotlib.cm import ScalarMappable

            bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.04, pad=0.01)
            bar.set_label("score")
    # --- ego box
    ego_box = _to_plot(ego_corners(scene.ego_pose), origin)
    ax.add_patch(Polygon(ego_box, closed=True, facecolor=EGO_COLOR, edgecolor="black", lw=0.8, zorder=11))
    nose = _local_to_plot(np.array([[EGO_VEHICLE.rear_axle_to_center, 0.0], [EGO_VEHICLE.front_length, 0.0]]))
    ax.plot(*nose.T, color="white", lw=1.2, zorder=12)
    ax.set_xlim(-BEV_LATERAL, BEV_LATERAL)
    ax.set_ylim(*BEV_FORWARD)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    speed = float(np.hypot(*scene.ego_states[t0, 3:5]))
    fig.suptitle(title or f"{scene.token}  command={scene.command_name}  v={speed:.1f} m/s", fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight")  # tight: keeps the score colorbar's tick labels in the image
    return out
