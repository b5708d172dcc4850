#!/usr/bin/env bash
# Build env.tar.gz: a virtualenv with hdp-gan and its dependencies that Spark ships to every
# YARN container with --archives env.tar.gz#env, where jobs run ./env/bin/python.
#
#   scripts/package_env.sh [OUTPUT]        (default: /tmp/hdp-gan/env.tar.gz)
#
#   PYTHON            base interpreter of the environment (default: python3). Every cluster
#                     node needs this same Python at the same path: see the README.
#   HDP_GAN_ENV_CACHE folder that keeps the dependency layer between builds
#                     (default: ~/.cache/hdp-gan/env); delete it to force a rebuild.
#
# The dependencies (pinned by constraints.txt) are built once and cached; after a code change
# only the project's own files are packed again, in seconds. The last line printed is a JSON
# summary with the archive's path, size and timings.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output="${1:-/tmp/hdp-gan/env.tar.gz}"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
  echo "package_env: error: no Python interpreter '$python'; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

cd "$repo"
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" \
  exec "$python" -m gan_lib.deploy package-env "$output" --python "$(command -v "$python")"
