#!/usr/bin/env bash
# Assemble the Oozie application folder of hdp-gan and upload it to HDFS through WebHDFS.
#
#   scripts/deploy_oozie.sh [--oozie-schema 1.0|0.5] [--env-archive FILE] [--app-path URI]
#   scripts/deploy_oozie.sh --local-only DIR [--oozie-schema 1.0|0.5] [--env-archive FILE]
#
#   --local-only DIR   only lay the folder out in DIR (new or empty); nothing is uploaded
#   --app-path URI     where the folder goes (default: appPath of oozie/job.properties for
#                      the user in HADOOP_USER_NAME or USER); hdfs:// URIs are reached
#                      through HDP_GAN_WEBHDFS_URL (e.g. http://sandbox-hdp.hortonworks.com:50070),
#                      webhdfs:// URIs directly; HDP_GAN_KERBEROS=1 for SPNEGO (after kinit)
#   --env-archive FILE env.tar.gz from scripts/package_env.sh
#                      (default: HDP_GAN_ENV_ARCHIVE or /tmp/hdp-gan/env.tar.gz)
#   --oozie-schema     1.0 for Oozie 5; 0.5 for Oozie 4.3 as in HDP 3.1 (default: 1.0)
#
# The folder holds workflow.xml, coordinator.xml, lib/ (the job files, pyspark.zip and the
# py4j zip of the installed pyspark) and env.tar.gz. The upload replaces the whole folder
# once it is complete. The last lines printed are the oozie commands that start the runs.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { printf 'deploy_oozie: error: %s\n' "$*" >&2; exit 2; }

local_only=""
schema="1.0"
archive="${HDP_GAN_ENV_ARCHIVE:-/tmp/hdp-gan/env.tar.gz}"
app_path=""
while [ $# -gt 0 ]; do
  case "$1" in
    --local-only) [ $# -ge 2 ] || die "--local-only needs a folder"; local_only="$2"; shift 2;;
    --oozie-schema) [ $# -ge 2 ] || die "--oozie-schema needs 1.0 or 0.5"; schema="$2"; shift 2;;
    --env-archive) [ $# -ge 2 ] || die "--env-archive needs a file"; archive="$2"; shift 2;;
    --app-path) [ $# -ge 2 ] || die "--app-path needs a URI"; app_path="$2"; shift 2;;
    -h|--help) sed -n '2,22p' "$0"; exit 0;;
    *) die "unknown option $1 (see --help)";;
  esac
done

python="${HDP_GAN_PYTHON:-python3}"
if [ -x "$repo/.venv/bin/python" ] && [ -z "${HDP_GAN_PYTHON:-}" ]; then
  python="$repo/.venv/bin/python"
fi
deploy() { PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$python" -m gan_lib.deploy "$@"; }

if [ -n "$local_only" ]; then
  deploy assemble "$local_only" --oozie-schema "$schema" --env-archive "$archive" \
    --allow-missing-env
  exit 0
fi

[ -f "$archive" ] || die "no env archive at $archive; build it with scripts/package_env.sh"
if [ -z "$app_path" ]; then
  user="${HADOOP_USER_NAME:-${USER:-$(id -un)}}"
  app_path="$(sed -n 's/^appPath=//p' "$repo/oozie/job.properties")"
  name_node="$(sed -n 's/^nameNode=//p' "$repo/oozie/job.properties")"
  app_path="${app_path//\$\{nameNode\}/$name_node}"
  app_path="${app_path//\$\{user.name\}/$user}"
fi

folder="$(mktemp -d "${TMPDIR:-/tmp}/hdp-gan-oozie-app.XXXXXX")"
trap 'rm -rf "$folder"' EXIT
deploy assemble "$folder/app" --oozie-schema "$schema" --env-archive "$archive" >/dev/null
deploy upload "$folder/app" "$app_path"

oozie_url="${OOZIE_URL:-http://sandbox-hdp.hortonworks.com:11000/oozie}"
cat <<EOF
deployed to $app_path
start the daily coordinator:
  oozie job -oozie $oozie_url -config $repo/oozie/job.properties -run
run the workflow once (with oozie.wf.application.path instead of oozie.coord.application.path
in job.properties):
  oozie job -oozie $oozie_url -config $repo/oozie/job.properties \\
    -DrunTag=manual-$(date -u +%Y%m%d%H%M) -run
EOF
