"""Palette and lighting of the built-in world's camera, varied per seed.

A :class:`RenderStyle` fixes everything about *how* a map looks (sky, sun, asphalt, paint, terrain, object colours,
sensor noise) but nothing about *what* is there. ``sample_style(seed)`` draws one deterministically, so the same seed
always gives the same image and different seeds give the appearance variety a learned encoder needs to ignore.
All colours are RGB in [0, 255].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Sky presets (zenith, horizon): clear midday, hazy, overcast, low evening sun. Horizon colours double as the distance
# haze, so far ground fades seamlessly into the sky.
_SKY_PRESETS = (
    ((70, 125, 205), (185, 210, 235)),
    ((120, 155, 200), (205, 212, 220)),
    ((150, 155, 162), (196, 198, 200)),
    ((80, 105, 165), (235, 190, 150)),
)
# Off-road terrain: lawn, dry grass, bare soil, scrub.
_TERRAIN_PRESETS = ((78, 118, 52), (128, 132, 72), (140, 118, 88), (96, 110, 70))
# Car paints, weighted to real fleets (mostly white, grey, black, silver, some colours).
_VEHICLE_PALETTE = (
    (225, 225, 228), (235, 235, 235), (40, 42, 46), (25, 25, 28), (150, 152, 158), (180, 182, 188),
    (120, 122, 128), (150, 30, 30), (35, 60, 130), (30, 90, 60), (200, 170, 60), (95, 60, 40), (200, 90, 30),
    (90, 110, 150),
)
_SHIRT_PALETTE = ((200, 50, 50), (40, 80, 160), (230, 200, 60), (60, 140, 70), (230, 230, 230), (40, 40, 45),
                  (150, 80, 150), (230, 120, 40))
_PANTS_PALETTE = ((40, 45, 70), (30, 30, 32), (90, 80, 70), (60, 70, 90))
_SKIN_PALETTE = ((235, 200, 170), (200, 155, 120), (150, 105, 75), (100, 70, 50))


@dataclass(frozen=True)
class RenderStyle:
    """Appearance of one rendered world. Arrays are float64 RGB."""

    sky_zenith: np.ndarray  # (3,)
    sky_horizon: np.ndarray  # (3,) also the distance-haze colour
    terrain: np.ndarray  # (3,) off-road ground near the camera
    skyline: np.ndarray  # (3,) distant tree/building silhouette
    skyline_profile: np.ndarray  # (N,) silhouette elevation in radians over world azimuth [0, 2 pi)
    road: np.ndarray  # (3,) asphalt
    road_jitter: float  # per-polygon asphalt brightness spread (patched surfaces)
    intersection: np.ndarray  # (3,)
    carpark: np.ndarray  # (3,)
    sidewalk: np.ndarray  # (3,)
    curb: np.ndarray  # (3,)
    paint_white: np.ndarray  # (3,)
    paint_yellow: np.ndarray  # (3,)
    shadow: np.ndarray  # (3,) contact shadow under objects
    glass: np.ndarray  # (3,)
    sun_direction: np.ndarray  # (3,) unit vector towards the sun, world frame (z up)
    sun_strength: float  # Lambert diffuse weight
    ambient: float  # Lambert ambient weight
    fog_distance: float  # m, e-folding distance of the haze
    noise_sigma: float  # grey levels of fixed-pattern sensor noise
    vehicle_palette: np.ndarray  # (K, 3)
    shirt_palette: np.ndarray  # (K, 3)
    pants_palette: np.ndarray  # (K, 3)
    skin_palette: np.ndarray  # (K, 3)
    palette_offset: int  # shifts which agent gets which colour

    @property
    def ground_light(self) -> float:
        """Brightness of horizontal surfaces under this sun (Lambert with normal +z)."""
        return self.ambient + self.sun_strength * max(0.0, float(self.sun_direction[2]))


def _jitter(rng: np.random.Generator, colour: tuple[int, ...] | np.ndarray, spread: float,
            chroma: float | None = None) -> np.ndarray:
    """``colour`` with a random brightness shift (``spread`` levels) and per-channel tint (``chroma``, default
    ``spread``); neutral surfaces (concrete, paint) get a small ``chroma`` so they stay neutral."""
    chroma = spread if chroma is None else chroma
    shift = rng.normal(0.0, spread) + rng.normal(0.0, chroma, 3)
    return np.clip(np.asarray(colour, dtype=np.float64) + shift, 0.0, 255.0)


def _skyline_profile(rng: np.random.Generator, bins: int = 1024) -> np.ndarray:
    """Elevation (rad) of a distant tree/building line: smooth random hills plus a few blocky buildings."""
    az = np.linspace(0.0, 2.0 * np.pi, bins, endpoint=False)
    deg = np.deg2rad(1.0)
    profile = np.full(bins, rng.uniform(0.6, 1.4) * deg)
    for k in (3, 7, 13, 29, 61):
        profile += rng.uniform(0.1, 0.5) * deg * (5.0 / k) ** 0.5 * np.sin(k * az + rng.uniform(0, 2 * np.pi))
    for _ in range(int(rng.integers(4, 16))):
        centre, half = rng.uniform(0, 2 * np.pi), rng.uniform(0.01, 0.06)
        dist = np.abs(np.angle(np.exp(1j * (az - centre))))
        profile = np.where(dist < half, np.maximum(profile, rng.uniform(1.5, 4.0) * deg), profile)
    return np.clip(profile, 0.2 * deg, 6.0 * deg)


def sample_style(seed: int) -> RenderStyle:
    """Deterministic appearance for ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    zenith, horizon = _SKY_PRESETS[int(rng.integers(len(_SKY_PRESETS)))]
    overcast = zenith == _SKY_PRESETS[2][0]
    sun_elevation = rng.uniform(np.deg2rad(12.0), np.deg2rad(65.0))
    sun_azimuth = rng.uniform(0.0, 2.0 * np.pi)
    sun = np.array([np.cos(sun_azimuth) * np.cos(sun_elevation), np.sin(sun_azimuth) * np.cos(sun_elevation),
                    np.sin(sun_elevation)])
    sky_horizon = _jitter(rng, horizon, 6.0)
    asphalt = rng.uniform(70.0, 115.0)
    road = np.clip(asphalt + rng.normal(0.0, 3.0, 3), 0, 255)
    return RenderStyle(
        sky_zenith=_jitter(rng, zenith, 8.0),
        sky_horizon=sky_horizon,
        terrain=_jitter(rng, _TERRAIN_PRESETS[int(rng.integers(len(_TERRAIN_PRESETS)))], 8.0),
        skyline=np.clip(0.55 * _jitter(rng, (70, 85, 70), 10.0) + 0.45 * sky_horizon, 0, 255),
        skyline_profile=_skyline_profile(rng),
        road=road,
        road_jitter=float(rng.uniform(1.0, 6.0)),
        intersection=np.clip(road * rng.uniform(0.95, 1.08), 0, 255),
        carpark=np.clip(road * rng.uniform(0.9, 1.15), 0, 255),
        sidewalk=_jitter(rng, (172, 170, 164), 12.0, chroma=2.0),
        curb=_jitter(rng, (190, 188, 182), 8.0, chroma=2.0),
        paint_white=_jitter(rng, (232, 232, 226), 6.0, chroma=1.5),
        paint_yellow=_jitter(rng, (226, 182, 40), 6.0, chroma=4.0),
        shadow=np.clip(road * 0.35, 0, 255),
        glass=_jitter(rng, (45, 55, 68), 6.0, chroma=3.0),
        sun_direction=sun,
        sun_strength=float(rng.uniform(0.15, 0.3) if overcast else rng.uniform(0.45, 0.7)),
        ambient=float(rng.uniform(0.55, 0.7)),
        fog_distance=float(rng.uniform(250.0, 900.0)),
        noise_sigma=float(rng.uniform(0.5, 2.5)),
        vehicle_palette=np.asarray(_VEHICLE_PALETTE, dtype=np.float64),
        shirt_palette=np.asarray(_SHIRT_PALETTE, dtype=np.float64),
        pants_palette=np.asarray(_PANTS_PALETTE, dtype=np.float64),
        skin_palette=np.asarray(_SKIN_PALETTE, dtype=np.float64),
        palette_offset=int(rng.integers(1 << 16)),
    )


__all__ = ["RenderStyle", "sample_style"]
