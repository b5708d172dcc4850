#!/usr/bin/env bash
# Rehearse the Oozie workflow as YARN would run it: build the environment archive, assemble
# the application, and run every Spark action in workflow order with spark-submit on
# local-cluster, the archive unpacked for the driver and each executor (fifteen times in all;
# the driver's copy took about 19 s). About 7 minutes on 2 cores once the archive's
# dependencies are cached (scripts/test.sh caches them); CI runs it after scripts/test.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HDP_GAN_EXTRAS=dev
source "$repo/scripts/setup_env.sh"
cd "$repo"
python -m pytest tests/test_deploy.py -m rehearsal -p no:cacheprovider "$@"
