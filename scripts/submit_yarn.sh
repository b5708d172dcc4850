#!/usr/bin/env bash
# Submit one hdp-gan job to YARN with spark-submit, in cluster mode, with the packaged Python
# environment as the interpreter of the driver and the executors.
#
#   scripts/submit_yarn.sh [--dry-run] JOB [JOB OPTIONS...]
#
#   JOB is a file of jobs/ (train_dcgan) or an hdp-gan subcommand (train); the job options
#   are those of `hdp-gan JOB --help`, for example --root hdfs://nn:8020/user/me/hdp-gan
#   --metastore-uri thrift://metastore:9083. --dry-run, anywhere among the arguments, prints
#   the command instead.
#
# Environment:
#   HDP_GAN_ENV_ARCHIVE   env.tar.gz from scripts/package_env.sh, a local path or an hdfs://
#                         URI (default: /tmp/hdp-gan/env.tar.gz)
#   SPARK_SUBMIT          spark-submit to run (default: spark-submit on the PATH)
#   SPARK_MASTER          master (default: yarn); SPARK_DEPLOY_MODE (default: cluster)
#   HDP_GAN_EXECUTORS     executors, and TensorFlow workers for train (default: 2)
#   HDP_GAN_QUEUE         YARN queue (default: the cluster's default queue)
#   HDP_GAN_PRINCIPAL and HDP_GAN_KEYTAB
#                         Kerberos principal and keytab file, passed to spark-submit so that
#                         long jobs can renew their tickets
#   HDP_GAN_WEBHDFS_URL, HADOOP_USER_NAME
#                         passed on to the driver and the executors when set
#
# The --conf settings come from gan_lib.deploy.submit_conf, the same that oozie/workflow.xml
# carries. The job gets --master too, since its session sets the master itself.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf 'submit_yarn: %s\n' "$*" >&2; }
die() { printf 'submit_yarn: error: %s\n' "$*" >&2; exit 2; }

case "${1:-}" in
  -h | --help)  # the comment block above, without its marks
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    exit 0;;
esac
dry_run=0
kept=()
for argument in "$@"; do  # --dry-run is the script's own wherever it stands; no job has one
  if [ "$argument" = "--dry-run" ]; then dry_run=1; else kept+=("$argument"); fi
done
set -- ${kept[@]+"${kept[@]}"}
[ $# -ge 1 ] || die "usage: scripts/submit_yarn.sh [--dry-run] JOB [JOB OPTIONS...]"
job="$1"
shift

master="${SPARK_MASTER:-yarn}"
deploy_mode="${SPARK_DEPLOY_MODE:-cluster}"
archive="${HDP_GAN_ENV_ARCHIVE:-/tmp/hdp-gan/env.tar.gz}"
executors="${HDP_GAN_EXECUTORS:-2}"
python="${HDP_GAN_PYTHON:-python3}"
if [ -x "$repo/.venv/bin/python" ] && [ -z "${HDP_GAN_PYTHON:-}" ]; then
  python="$repo/.venv/bin/python"
fi

case "$archive" in
  *://*) ;;
  *) [ -f "$archive" ] || [ "$dry_run" = 1 ] \
       || die "no env archive at $archive; build it with scripts/package_env.sh" \
              "or set HDP_GAN_ENV_ARCHIVE";;
esac

deploy() { PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$python" -m gan_lib.deploy "$@"; }
job_file="$(deploy job-file "$job")" || exit 2
conf_flags=()
while IFS= read -r line; do
  conf_flags+=("$line")
done < <(deploy spark-conf "$job" --executors "$executors")
[ ${#conf_flags[@]} -gt 0 ] || die "no Spark settings came from gan_lib.deploy"

command=("${SPARK_SUBMIT:-spark-submit}" --master "$master" --deploy-mode "$deploy_mode"
         --name "hdp-gan $(basename "$job_file" .py)"
         --archives "$archive#env")
[ -n "${HDP_GAN_QUEUE:-}" ] && command+=(--queue "$HDP_GAN_QUEUE")
if [ -n "${HDP_GAN_PRINCIPAL:-}" ] || [ -n "${HDP_GAN_KEYTAB:-}" ]; then
  [ -n "${HDP_GAN_PRINCIPAL:-}" ] && [ -n "${HDP_GAN_KEYTAB:-}" ] \
    || die "set both HDP_GAN_PRINCIPAL and HDP_GAN_KEYTAB, or neither"
  [ -r "$HDP_GAN_KEYTAB" ] || [ "$dry_run" = 1 ] \
    || die "cannot read the keytab file $HDP_GAN_KEYTAB"
  command+=(--principal "$HDP_GAN_PRINCIPAL" --keytab "$HDP_GAN_KEYTAB")
fi
command+=("${conf_flags[@]}" "$job_file")

job_args=("$@")
has_master=0
for arg in "${job_args[@]}"; do
  case "$arg" in --master|--master=*) has_master=1;; esac
done
[ "$has_master" = 1 ] || job_args=("--master=$master" "${job_args[@]}")
command+=("${job_args[@]}")

if [ "$dry_run" = 1 ]; then
  printf '%q ' "${command[@]}"
  printf '\n'
  exit 0
fi
say "submitting $(basename "$job_file") to $master ($deploy_mode mode)"
exec "${command[@]}"
