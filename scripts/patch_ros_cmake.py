"""Rewrite manylinux build paths baked into the ROS message wheels' exported CMake files.

The PyPI ROS wheels were built under /opt/python/cpXY-cpXY; their CMake config files point at that
interpreter's include dir and numpy's include dir there. colcon builds of rosidl packages need the
venv's own paths instead (see shared/reference/ros2_from_pypi.md). Safe to run repeatedly.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy


def main(venv: str) -> int:
    # The paths must be this interpreter's, so it has to be the venv's own python.
    if Path(sys.prefix).resolve() != Path(venv).resolve():
        print(f"patch_ros_cmake: run me with {venv}/bin/python (running in {sys.prefix})", file=sys.stderr)
        return 2
    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    if not Path(py_include, "Python.h").is_file():
        print(
            f"patch_ros_cmake: {py_include}/Python.h is missing: install the Python development headers",
            file=sys.stderr,
        )
        return 1
    patterns = [
        (re.compile(r"/opt/python/cp\d+-cp\d+t?/include/python3\.\d+t?"), py_include),
        (
            re.compile(r"/opt/python/cp\d+-cp\d+t?/lib/python3\.\d+t?/site-packages/numpy/(?:_)?core/include"),
            np_include,
        ),
        (re.compile(r"/[^\s\";]*?/site-packages/numpy/(?:_)?core/include"), np_include),
    ]
    changed = 0
    for path in Path(venv, "share").glob("*/cmake/*.cmake"):
        text = path.read_text(errors="replace")
        new = text
        for pattern, repl in patterns:
            new = pattern.sub(lambda _m, r=repl: r, new)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"patch_ros_cmake: rewrote {changed} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
