#!/usr/bin/env bash
# Rehearse the Oozie workflow as YARN would run it: build the environment archive, assemble
# the application, and run every Spark action in workflow order with spark-submit on
# local-cluster, the archive unpacked for the driver and each executor. About 11 minutes on
# 2 cores, which is why it is not part of scripts/test.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HDP_GAN_EXTRAS=dev
source "$repo/scripts/setup_env.sh"
cd "$repo"
python -m pytest tests/test_deploy.py -m rehearsal -p no:cacheprovider "$@"
