"""rosbag2 replay evaluation and bag import (plain Python: rosbag2 files are read and written with ``rosbags``).

* :mod:`.pairing` — THE input pairing shared with the ROS node (frame at t-0.5 s, odometry, acceleration).
* :mod:`.bag_io` — reading camera/odometry/command topics, image decoding, writing planner outputs and synthetic bags.
* :mod:`.replay` — ``drive-jepa replay``: open-loop evaluation of a planner on a bag.
* :mod:`.bag_import` — ``drive-jepa bag import``: bag → scene files for training.

Only the pairing is imported here, so the node can use it without pulling in ``rosbags`` or matplotlib.
"""

from drive_jepa_core.replay.pairing import (
    InputPairer,
    OdometrySample,
    PairedInput,
    PairingConfig,
    SkipReason,
    estimate_acceleration,
    finite_difference_acceleration,
)

__all__ = [
    "InputPairer", "OdometrySample", "PairedInput", "PairingConfig", "SkipReason", "estimate_acceleration",
    "finite_difference_acceleration",
]
