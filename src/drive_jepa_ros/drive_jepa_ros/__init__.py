"""drive_jepa_ros: the ROS 2 adapter of the Drive-JEPA planner (node, message <-> numpy conversion, markers).

Planning itself lives in ``drive_jepa_core``; this package only translates between ROS messages and its
numpy API. Modules that need rclpy import it themselves, so ``drive_jepa_ros.conversions`` stays usable without ROS.
"""

__version__ = "0.1.0"
