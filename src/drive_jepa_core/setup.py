"""drive_jepa_core: pip-installable and an ament_python package (colcon builds it via package.xml)."""

from setuptools import find_packages, setup

PACKAGE = "drive_jepa_core"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["configs/*.yaml", "assets/*/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    python_requires=">=3.10",
    # Unpinned on purpose; scripts/setup_env.sh installs torch==2.13.0 (CPU) before this package.
    install_requires=[
        "numpy",
        "scipy",
        "shapely",
        "opencv-python-headless",
        "matplotlib",
        "pillow",
        "tqdm",
        "pyyaml",
        "safetensors",
        "torch",
        "onnx",
        "onnxruntime",
        "rosbags",
        "scikit-learn",
        "imageio",
    ],
    extras_require={"tensorrt": ["tensorrt"], "test": ["pytest", "pytest-timeout"]},
    zip_safe=False,
    maintainer="drive-jepa-ros developers",
    description="Drive-JEPA end-to-end planner core (no ROS imports).",
    license="Apache-2.0",
    entry_points={"console_scripts": ["drive-jepa = drive_jepa_core.cli:main"]},
)
