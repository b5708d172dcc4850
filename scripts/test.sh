#!/usr/bin/env bash
# Install everything the tests need, then run the whole test suite.
#
#   scripts/test.sh [pytest options]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HDP_GAN_EXTRAS=dev
export HDP_GAN_APT="${HDP_GAN_APT:-libderby-java libderbyclient-java chromium}"
source "$repo/scripts/setup_env.sh"
cd "$repo"

python -m pytest tests "$@"
