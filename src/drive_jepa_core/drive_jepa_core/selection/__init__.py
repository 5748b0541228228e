"""Trajectory selection among scored proposals (momentum-aware, drive_jepa.md §7)."""

from drive_jepa_core.selection.momentum import MomentumConfig, MomentumSelector, ResetReason, SelectionResult

__all__ = ["MomentumConfig", "MomentumSelector", "ResetReason", "SelectionResult"]
