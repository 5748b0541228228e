"""drive_jepa_ros: ament_python package (colcon builds it from package.xml).

Launch files and configs live at the repository root (``launch/``, ``config/``) so they are easy to find; they are
installed from there into ``share/drive_jepa_ros`` so ``ros2 launch drive_jepa_ros planner.launch.py`` finds them.
data_files must be relative to this directory (colcon asserts it), hence the ``../../`` paths. Globbing keeps the
build working while those folders are still empty.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "drive_jepa_ros"
REPO_ROOT = "../.."  # relative to this file's directory, which is the cwd colcon and pip run setup.py in

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", sorted(glob(f"{REPO_ROOT}/launch/*.py"))),
        (f"share/{PACKAGE}/config", sorted(glob(f"{REPO_ROOT}/config/*.yaml") + glob(f"{REPO_ROOT}/config/*.rviz"))),
    ],
    python_requires=">=3.10",
    install_requires=["setuptools", "numpy"],
    zip_safe=True,
    maintainer="drive-jepa-ros developers",
    maintainer_email="dev@drive-jepa-ros.invalid",
    description="ROS 2 adapter of the Drive-JEPA planner (node, conversions, launch, config).",
    license="Apache-2.0",
    # Resolved when the script runs, so it may be declared before planner_node.py exists.
    entry_points={"console_scripts": [f"planner_node = {PACKAGE}.planner_node:main"]},
)
