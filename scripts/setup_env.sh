#!/usr/bin/env bash
# Prepare this machine for hdp-gan: Java, the Fashion-MNIST data package, and a virtualenv
# with the project and its pinned dependencies. Sourced by demo.sh and test.sh.
#
#   HDP_GAN_VENV   virtualenv folder (default: .venv in the repository)
#   HDP_GAN_EXTRAS pip extras to install, e.g. "dev" (default: none)
#   HDP_GAN_APT    extra Debian packages to install when missing
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HDP_GAN_VENV:-$repo/.venv}"
extras="${HDP_GAN_EXTRAS:-}"
data_dir=/usr/share/datasets/fashion-mnist

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

apt_packages=()
need_apt() { apt_packages+=("$@"); }

# Java: Spark 3.5 runs on Java 8, 11 and 17. Spark starts $JAVA_HOME/bin/java when JAVA_HOME
# is set, else the java on PATH: the same one is checked here.
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if ! command -v "$java_bin" >/dev/null 2>&1; then
  [ -n "${JAVA_HOME:-}" ] && die "JAVA_HOME is $JAVA_HOME but $java_bin is not there; point JAVA_HOME at a Java 8, 11 or 17 installation, or unset it"
  need_apt openjdk-17-jre-headless
else
  java_major=$("$java_bin" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\(\.[0-9]*\)*.*/\1/p' | head -1)
  [ "$java_major" = "1" ] && java_major=8
  case "$java_major" in
    8|11|17) ;;
    *) if [ -n "${JAVA_HOME:-}" ]; then
         die "Java $java_major found at JAVA_HOME ($JAVA_HOME); Spark 3.5 needs Java 8, 11 or 17: point JAVA_HOME at one (apt-get install openjdk-17-jre-headless puts it in /usr/lib/jvm)"
       fi
       die "Java $java_major found; Spark 3.5 needs Java 8, 11 or 17 (apt-get install openjdk-17-jre-headless, then set JAVA_HOME)";;
  esac
fi
[ -f "$data_dir/train-images-idx3-ubyte.gz" ] || [ -f "$data_dir/train-images-idx3-ubyte" ] \
  || need_apt dataset-fashion-mnist
for package in ${HDP_GAN_APT:-}; do
  dpkg -s "$package" >/dev/null 2>&1 || need_apt "$package"
done

if [ ${#apt_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian packages: ${apt_packages[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
  else
    die "missing: ${apt_packages[*]}. Install them as root (apt-get install ${apt_packages[*]}); without apt, install Java 17 and copy the Fashion-MNIST IDX files to $data_dir or pass --source DIR to hdp-gan ingest"
  fi
fi

# Python 3.10 to 3.13: TensorFlowOnSpark needs the fork start method, which 3.14 dropped.
python="${PYTHON:-python3}"
"$python" - <<'PY' || die "Python 3.10 to 3.13 is needed (found $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11"
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)
PY

stamp="$venv/.hdp-gan-installed"
wanted="$(cat "$repo/setup.py" "$repo/constraints.txt" | sha256sum | cut -c1-16)-$extras"
if [ ! -x "$venv/bin/python" ]; then
  say "creating the virtualenv $venv"
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  say "installing hdp-gan and its dependencies into $venv (a few minutes the first time)"
  target="$repo"
  [ -n "$extras" ] && target="$repo[$extras]"
  "$venv/bin/pip" install -q --disable-pip-version-check -c "$repo/constraints.txt" -e "$target"
  echo "$wanted" > "$stamp"
fi

export PATH="$venv/bin:$PATH"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export PYSPARK_PYTHON="$venv/bin/python"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

# A class-data archive that lets each job's Spark JVMs start seconds sooner (built once per
# virtualenv, Java and pyspark; jobs start as before without it).
if [ "${HDP_GAN_CLASS_ARCHIVE:-on}" != "off" ] \
    && ! "$venv/bin/python" -m gan_lib.class_archive --built 2>/dev/null; then
  say "recording Spark's classes for faster job starts (once, about 30 s)"
  "$venv/bin/python" -m gan_lib.class_archive >/dev/null 2>&1 \
    || say "the class archive could not be built; jobs start without it"
fi
