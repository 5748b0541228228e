"""Planning metrics: NAVSIM comfort / history comfort / extended comfort, the PDM scorer, and mode diversity.

One metric family per module; all operate on numpy arrays of simulated states from :mod:`drive_jepa_core.sim`.
"""
