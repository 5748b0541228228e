"""Drive-JEPA planner core: plain Python (numpy/torch), never imports rclpy."""

__version__ = "0.1.0"
