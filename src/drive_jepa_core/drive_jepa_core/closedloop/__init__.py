"""Closed-loop evaluation in the built-in world: an agent (the trained planner, the expert, or the constant-velocity
baseline) drives the ego of a generated world at 10 Hz through NAVSIM's LQR tracker and kinematic bicycle while the
IDM traffic reacts; the drive is judged on route completion, at-fault collisions, off-road driving, red-light
violations, comfort and the per-step EPDMS of its plans.

:mod:`.episode` runs one episode, :mod:`.metrics` holds the rules, :mod:`.report` writes the summaries and pictures,
:mod:`.cli` adds ``drive-jepa closedloop``.
"""

from drive_jepa_core.closedloop.episode import AGENTS, ClosedLoopConfig, EpisodeResult, make_agent, run_episode

__all__ = ["AGENTS", "ClosedLoopConfig", "EpisodeResult", "make_agent", "run_episode"]
