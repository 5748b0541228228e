"""Front-camera renderer: projection, object colours, traffic lights, near-plane clipping, determinism, speed."""

from __future__ import annotations

import numpy as np
import pytest

from drive_jepa_core.scene.format import (
    AgentType,
    MapLayer,
    Scene,
    TrafficLightStatus,
    empty_agent_fields,
    empty_map_fields,
)
from drive_jepa_core.world.render import (
    FRONT_CAMERA_HFOV_DEG,
    FRONT_CAMERA_PITCH_DEG,
    FRONT_CAMERA_POSITION_M,
    CameraRenderer,
    default_front_camera,
)

LANE_WIDTH = 3.5
JUNCTION_HALF = 10.0  # the junction square is [-10, 10]^2


def _bezier(p0: np.ndarray, d0: np.ndarray, p1: np.ndarray, d1: np.ndarray, n: int = 12) -> np.ndarray:
    k = 0.5 * np.linalg.norm(p1 - p0)
    t = np.linspace(0.0, 1.0, n)[:, None]
    c0, c1 = p0 + d0 * k, p1 - d1 * k
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * c0 + 3 * (1 - t) * t ** 2 * c1 + t ** 3 * p1


def _offset(points: np.ndarray, d: float) -> np.ndarray:
    seg = np.gradient(points, axis=0)
    seg /= np.linalg.norm(seg, axis=1, keepdims=True)
    return points + d * np.stack([-seg[:, 1], seg[:, 0]], axis=1)


def make_junction_map(arm_length: float = 200.0, lanes: int = 2, step: float = 10.0) -> tuple[Scene, np.ndarray]:
    """A 4-way junction at the origin with ``lanes`` + ``lanes`` lanes per arm (right-hand traffic), roadblock,
    lane, connector and intersection polygons. Returns the map scene and the ids of the connectors coming from the
    west and east arms (the ones that get traffic lights)."""
    polygon_ids, layers, polygons = [], [], []
    lane_ids, lane_blocks, is_conn, centres, lefts, rights, successors = [], [], [], [], [], [], []
    next_id = [1]

    def new_id() -> int:
        next_id[0] += 1
        return next_id[0]

    def add_lane(block: int, centre: np.ndarray, connector: bool) -> int:
        lid = new_id()
        left, right = _offset(centre, LANE_WIDTH / 2), _offset(centre, -LANE_WIDTH / 2)
        lane_ids.append(lid), lane_blocks.append(block), is_conn.append(connector)
        centres.append(centre), lefts.append(left), rights.append(right)
        polygon_ids.append(lid), layers.append(MapLayer.LANE_CONNECTOR if connector else MapLayer.LANE)
        polygons.append(np.concatenate([left, right[::-1]]))
        return lid

    r = np.arange(JUNCTION_HALF, arm_length + 1e-9, step)
    incoming: dict[tuple[int, int], tuple[int, np.ndarray, np.ndarray]] = {}  # (arm, lane) -> id, end, dir
    outgoing: dict[tuple[int, int], tuple[int, np.ndarray, np.ndarray]] = {}
    for arm in range(4):
        a = arm * np.pi / 2
        d, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        for direction in ("out", "in"):
            block = new_id()
            sign = -1.0 if direction == "out" else 1.0  # outgoing lanes lie right of d, incoming left of d
            edge = sign * lanes * LANE_WIDTH
            corners = [JUNCTION_HALF * d, arm_length * d, arm_length * d + edge * n, JUNCTION_HALF * d + edge * n]
            polygon_ids.append(block), layers.append(MapLayer.ROADBLOCK), polygons.append(np.array(corners))
            for k in range(lanes):
                lat = sign * (k + 0.5) * LANE_WIDTH
                pts = r[:, None] * d + lat * n
                if direction == "in":
                    pts = pts[::-1]
                lid = add_lane(block, pts, connector=False)
                heading = d if direction == "out" else -d
                (outgoing if direction == "out" else incoming)[(arm, k)] = (lid, pts[0] if direction == "out"
                                                                            else pts[-1], heading)
    inter = new_id()
    polygon_ids.append(inter), layers.append(MapLayer.INTERSECTION)
    polygons.append(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float) * JUNCTION_HALF)
    lit = []
    for arm in range(4):
        for k in range(lanes):
            lid, p0, d0 = incoming[(arm, k)]
            targets = [((arm + 2) % 4, k)]  # straight
            if k == 0:
                targets.append(((arm + 1) % 4, 0))  # left turn from the inner lane
            if k == lanes - 1:
                targets.append(((arm + 3) % 4, lanes - 1))  # right turn from the outer lane
            for target in targets:
                oid, p1, d1 = outgoing[target]
                block = new_id()
                cid = add_lane(block, _bezier(p0, d0, p1, d1), connector=True)
                successors += [(lid, cid), (cid, oid)]
                if arm in (0, 2):
                    lit.append(cid)
    fields = dict(
        map_polygon_ids=np.array(polygon_ids, np.int64), map_polygon_layers=np.array(layers, np.int64),
        map_polygons=polygons, lane_ids=np.array(lane_ids, np.int64),
        lane_roadblock_ids=np.array(lane_blocks, np.int64),
        lane_is_connector=np.array(is_conn, bool), lane_speed_limits=np.full(len(lane_ids), 13.9),
        lane_centerlines=centres, lane_left_boundaries=lefts, lane_right_boundaries=rights,
        lane_successors=np.array(successors, np.int64).reshape(-1, 2), route_roadblock_ids=[])
    return _scene(fields), np.array(lit, np.int64)


def _scene(map_fields: dict) -> Scene:
    return Scene(token="render-test", log_name="render-test", split="test", source="synthetic", command=1,
                 timestamps=np.zeros(1), t0_index=0, ego_states=np.zeros((1, 7)), **empty_agent_fields(1),
                 **map_fields, camera=None, camera_timestamps=np.zeros(0), camera_frames=None)


def _empty_map_scene() -> Scene:
    return _scene(empty_map_fields())


NO_AGENTS = (np.zeros(0, np.int64), np.zeros((0, 6)))
NO_LIGHTS = (np.zeros(0, np.int64), np.zeros(0, np.int64))


@pytest.fixture(scope="module")
def junction() -> tuple[Scene, np.ndarray]:
    return make_junction_map()


def test_default_camera_projects_hand_computed_points() -> None:
    cam = default_front_camera(512, 256)
    assert cam.intrinsics.shape == (3, 3) and cam.sensor2ego.shape == (4, 4)
    f = 256.0 / np.tan(np.deg2rad(FRONT_CAMERA_HFOV_DEG / 2))
    np.testing.assert_allclose(cam.intrinsics, [[f, 0, 256], [0, f, 128], [0, 0, 1]])
    np.testing.assert_allclose(cam.sensor2ego[:3, 3], FRONT_CAMERA_POSITION_M)
    np.testing.assert_allclose(cam.sensor2ego[:3, :3] @ cam.sensor2ego[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(cam.sensor2ego[:3, :3]) == pytest.approx(1.0)
    P = cam.ego2image()
    cx, cy, cz = FRONT_CAMERA_POSITION_M
    pitch = np.deg2rad(FRONT_CAMERA_PITCH_DEG)

    def pixel(p: np.ndarray) -> np.ndarray:
        h = P @ np.append(p, 1.0)
        return h[:2] / h[2]

    # On the optical axis, 10 m away -> principal point.
    np.testing.assert_allclose(pixel(np.array([cx + 10 * np.cos(pitch), cy, cz - 10 * np.sin(pitch)])), [256, 128],
                               atol=1e-9)
    # A point 2 m to the LEFT on a plane 20 m along the axis: u = cx - f * 2 / 20; same row as the axis.
    axis = np.array([np.cos(pitch), 0.0, -np.sin(pitch)])
    p = np.array([cx, cy, cz]) + 20 * axis + np.array([0.0, 2.0, 0.0])
    np.testing.assert_allclose(pixel(p), [256 - f * 2 / 20, 128], atol=1e-9)
    # The horizon (a far point at camera height) is fy * tan(pitch) above the centre row.
    np.testing.assert_allclose(pixel(np.array([1e7, 0.0, cz]))[1], 128 - f * np.tan(pitch), atol=1e-3)


def test_world_to_image_matches_ego_projection(junction) -> None:
    scene, _ = junction
    cam = default_front_camera()
    renderer = CameraRenderer(scene, cam, seed=0)
    pose = np.array([5.0, -3.0, np.pi / 2])  # ego facing +y
    world = np.array([5.0 + 0.5, -3.0 + 30.0, 0.0])  # 30 m ahead, 0.5 m to the RIGHT (world +x)
    h = renderer.world_to_image(pose) @ np.append(world, 1.0)
    ego = np.array([30.0, -0.5, 0.0, 1.0])
    g = cam.ego2image() @ ego
    np.testing.assert_allclose(h[:2] / h[2], g[:2] / g[2], atol=1e-9)
    assert h[0] / h[2] > 256  # right of the centre


def test_output_dtype_shape_and_plausible_layout(junction) -> None:
    scene, _ = junction
    cam = default_front_camera(320, 160)
    img = CameraRenderer(scene, cam, seed=3).render(np.array([-60.0, -1.75, 0.0]), *NO_AGENTS, *NO_LIGHTS)
    assert img.shape == (160, 320, 3) and img.dtype == np.uint8
    top, bottom = img[:20].astype(float), img[-10:, 140:180].astype(float)
    assert top[..., 2].mean() > top[..., 1].mean() - 40  # sky is bluish/greyish, not green
    # Bottom centre is asphalt: grey (channels within a few levels) and darker than the sky.
    assert np.ptp(bottom.mean(axis=(0, 1))) < 25 and bottom.mean() < top.mean()


def test_car_straight_ahead_is_centred_with_its_colour() -> None:
    cam = default_front_camera(512, 256)
    renderer = CameraRenderer(_empty_map_scene(), cam, seed=1)
    box = np.array([[20.0, 0.0, 0.0, 4.5, 1.9, 1.6]])
    empty = renderer.render(np.zeros(3), *NO_AGENTS, *NO_LIGHTS).astype(int)
    img = renderer.render(np.zeros(3), np.array([AgentType.VEHICLE]), box, *NO_LIGHTS).astype(int)
    changed = np.abs(img - empty).sum(axis=2) > 30
    cols = np.flatnonzero(changed.any(axis=0))
    assert cols.size > 0
    assert 256 - 60 < cols.min() and cols.max() < 256 + 60  # ~1.9 m wide at ~18.5 m: +-20 px about the centre
    assert abs((cols.min() + cols.max()) / 2 - 256) < 4
    # The rear face (the one we see) is the body colour, shaded: same hue as the palette entry it came from.
    rear = img[changed].mean(axis=0)
    palette = renderer.style.vehicle_palette
    assert np.min(np.linalg.norm(palette / np.linalg.norm(palette, axis=1, keepdims=True)
                                 - rear / np.linalg.norm(rear), axis=1)) < 0.25
    # A pedestrian gets a different silhouette: tall and narrow.
    ped = renderer.render(np.zeros(3), np.array([AgentType.PEDESTRIAN]), np.array([[10.0, 0.0, 0.0, 0.5, 0.6, 1.75]]),
                          *NO_LIGHTS).astype(int)
    mask = np.abs(ped - empty).sum(axis=2) > 30
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert np.ptp(rows) > 1.5 * np.ptp(cols)


def test_red_light_renders_red_above_the_road(junction) -> None:
    scene, lit = junction
    cam = default_front_camera(512, 256)
    renderer = CameraRenderer(scene, cam, seed=0)
    pose = np.array([-40.0, -1.75, 0.0])  # west arm, inner eastbound lane, 30 m before the junction
    red = renderer.render(pose, *NO_AGENTS, lit, np.full(len(lit), TrafficLightStatus.RED)).astype(int)
    green = renderer.render(pose, *NO_AGENTS, lit, np.full(len(lit), TrafficLightStatus.GREEN)).astype(int)
    horizon = 128 - int(512 / 2 / np.tan(np.deg2rad(FRONT_CAMERA_HFOV_DEG / 2)) * np.tan(
        np.deg2rad(FRONT_CAMERA_PITCH_DEG)))

    def reddish(img: np.ndarray) -> np.ndarray:
        return (img[..., 0] > 180) & (img[..., 1] < 110) & (img[..., 2] < 110)

    def greenish(img: np.ndarray) -> np.ndarray:
        return (img[..., 1] > 180) & (img[..., 0] < 130)

    red_rows = np.flatnonzero(reddish(red).any(axis=1))
    assert red_rows.size > 0 and red_rows.max() < horizon  # lamps hang above the horizon
    assert not reddish(green).any()
    assert greenish(green)[:horizon].any() and not greenish(red)[:horizon].any()


def test_near_plane_clipping_no_wraparound() -> None:
    """A car straddling the camera plane (its rear behind the lens, front to the left ahead) and a huge ground quad
    around the camera must not smear geometry into the sky or onto the wrong side."""
    cam = default_front_camera(256, 128)
    renderer = CameraRenderer(_empty_map_scene(), cam, seed=2)
    empty = renderer.render(np.zeros(3), *NO_AGENTS, *NO_LIGHTS).astype(int)
    box = np.array([[1.5, 2.5, 0.0, 6.0, 2.0, 1.5]])  # centre beside the camera, 2.5 m to the left, 4.5 m long
    img = renderer.render(np.zeros(3), np.array([AgentType.VEHICLE]), box, *NO_LIGHTS).astype(int)
    changed = np.abs(img - empty).sum(axis=2) > 30
    assert changed[:, :128].any()  # the visible front half shows up on the left ...
    assert not changed[:, 160:].any()  # ... and nothing wraps around to the right side
    # Ground polygon enclosing the camera (half behind it): covers the lower image, nothing above the horizon.
    quad = np.array([[-50.0, -50.0], [50.0, -50.0], [50.0, 50.0], [-50.0, 50.0]])
    fields = empty_map_fields()
    fields.update(map_polygon_ids=np.array([1], np.int64), map_polygon_layers=np.array([MapLayer.ROADBLOCK]),
                  map_polygons=[quad])
    ground = CameraRenderer(_scene(fields), cam, seed=2).render(np.zeros(3), *NO_AGENTS, *NO_LIGHTS).astype(int)
    diff = np.abs(ground - empty).sum(axis=2) > 30
    horizon = 64 - 128 / 2 / np.tan(np.deg2rad(FRONT_CAMERA_HFOV_DEG / 2)) * np.tan(np.deg2rad(FRONT_CAMERA_PITCH_DEG))
    assert diff[-1].all()  # the bottom row is paved end to end
    assert not diff[: int(horizon) - 2].any()


def test_deterministic_per_seed_and_varied_across_seeds(junction) -> None:
    scene, lit = junction
    cam = default_front_camera(256, 128)
    pose = np.array([-50.0, -1.75, 0.05])
    agents = (np.array([AgentType.VEHICLE, AgentType.PEDESTRIAN]),
              np.array([[-30.0, -1.75, 0.0, 4.6, 1.9, 1.5], [-35.0, -8.0, 1.0, 0.5, 0.6, 1.7]]))
    lights = (lit, np.full(len(lit), TrafficLightStatus.GREEN))
    a = CameraRenderer(scene, cam, seed=7).render(pose, *agents, *lights)
    b = CameraRenderer(scene, cam, seed=7).render(pose, *agents, *lights)
    np.testing.assert_array_equal(a, b)
    c = CameraRenderer(scene, cam, seed=8).render(pose, *agents, *lights)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 3.0
    sky_a, sky_c = a[:8].reshape(-1, 3).mean(0), c[:8].reshape(-1, 3).mean(0)
    assert not np.allclose(sky_a, sky_c, atol=2.0)


def test_bad_inputs_raise_clear_errors(junction) -> None:
    scene, lit = junction
    renderer = CameraRenderer(scene, default_front_camera(128, 64))
    with pytest.raises(ValueError, match="ego_pose"):
        renderer.render(np.zeros(2), *NO_AGENTS, *NO_LIGHTS)
    with pytest.raises(ValueError, match="agent_boxes"):
        renderer.render(np.zeros(3), np.array([0]), np.zeros((1, 5)), *NO_LIGHTS)
    with pytest.raises(ValueError, match="light_status"):
        renderer.render(np.zeros(3), *NO_AGENTS, lit, np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="not in the map"):
        renderer.render(np.zeros(3), *NO_AGENTS, np.array([999999]), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="positive"):
        default_front_camera(0, 10)


def test_lane_markings_follow_boundary_sharing(junction) -> None:
    """Junction map, per arm: 2 + 2 lanes of 190 m. Same-direction neighbours share one dashed white line per
    direction (190 m / (3 m + 9 m) -> 16 dashes), opposite directions one double yellow line (2 strips), the outer
    boundary of each direction is a road edge (1 solid white line, 1 curb, 1 sidewalk)."""
    scene, _ = junction
    renderer = CameraRenderer(scene, default_front_camera(128, 64), seed=0)
    style = renderer.style
    colours = renderer._ground.colours

    def count(rgb: np.ndarray) -> int:
        target = tuple(int(c) for c in np.clip(np.rint(rgb), 0, 255))
        return sum(c == target for c in colours)

    yellow = count(style.paint_yellow * style.ground_light)
    white = count(style.paint_white * style.ground_light)
    sidewalks = count(style.sidewalk * style.ground_light)
    assert yellow == 4 * 2
    assert sidewalks == 4 * 2
    # white polygons: 8 arms-directions x (16 dashes + 1 edge line) + 8 stop lines; crosswalks are not given here
    assert white == 8 * (16 + 1) + 8


def test_crosswalks_and_agent_ids(junction) -> None:
    scene, _ = junction
    cam = default_front_camera(256, 128)
    pose = np.array([-30.0, -1.75, 0.0])
    crossing = [(np.array([-8.0, -9.0]), np.array([-8.0, 9.0]))]  # across the west arm at the junction mouth
    plain = CameraRenderer(scene, cam, seed=4).render(pose, *NO_AGENTS, *NO_LIGHTS).astype(int)
    zebra = CameraRenderer(scene, cam, seed=4, crosswalks=crossing).render(pose, *NO_AGENTS, *NO_LIGHTS).astype(int)
    changed = np.abs(zebra - plain).sum(axis=2) > 60
    assert changed.sum() > 50 and (zebra[changed].mean(axis=0) > plain[changed].mean(axis=0) + 40).all()  # white bars
    # agent_ids pick the colour: same ids -> same image, different ids -> (usually) another paint.
    renderer = CameraRenderer(_empty_map_scene(), cam, seed=0)
    box = np.array([[15.0, 0.0, 0.0, 4.5, 1.9, 1.5]])
    car = np.array([AgentType.VEHICLE])
    images = [renderer.render(np.zeros(3), car, box, *NO_LIGHTS, agent_ids=np.array([i])) for i in range(6)]
    np.testing.assert_array_equal(images[0], renderer.render(np.zeros(3), car, box, *NO_LIGHTS,
                                                             agent_ids=np.array([0])))
    assert len({img.tobytes() for img in images}) > 1


def test_lights_for_cross_traffic_show_no_lamps(junction) -> None:
    """From the north arm, the west/east approaches' heads are seen side-on: their visors hide the lenses."""
    scene, lit = junction
    renderer = CameraRenderer(scene, default_front_camera(256, 128), seed=0)
    pose = np.array([1.75, 40.0, -np.pi / 2])  # southbound on the north arm, looking into the junction
    img = renderer.render(pose, *NO_AGENTS, lit, np.full(len(lit), TrafficLightStatus.RED)).astype(int)
    assert not ((img[..., 0] > 180) & (img[..., 1] < 110) & (img[..., 2] < 110)).any()
