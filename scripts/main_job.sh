#!/usr/bin/env bash
# The project's main job (placeholder until it is defined; scripts/setup.sh runs it after setting up).
set -euo pipefail
echo "main job: not yet defined"
