#!/usr/bin/env bash
# Run the whole pipeline on the real Fashion-MNIST data on this machine, then show what it
# made and ask Hive how the generated images were labelled.
#
#   scripts/demo.sh [extra hdp-gan pipeline options]
#   HDP_GAN_DEMO_ROOT  storage root (default: demo-root in the repository)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${HDP_GAN_DEMO_ROOT:-$repo/demo-root}"
case "$root" in
  /* | *://*) ;;
  *) root="$PWD/$root" ;;  # a relative folder is taken from where the demo was started
esac
source "$repo/scripts/setup_env.sh"
cd "$repo"

for option in "$@"; do
  case "$option" in
    -h | --help)
      echo "usage: scripts/demo.sh [hdp-gan pipeline options]   (HDP_GAN_DEMO_ROOT=PATH: the root)"
      echo
      hdp-gan pipeline --help
      exit 0;;
  esac
done

summary_file="$(mktemp)"
trap 'rm -f "$summary_file"' EXIT
started=$(date +%s)

echo "== hdp-gan pipeline on Fashion-MNIST (root: $root)" >&2
hdp-gan pipeline --root "$root" "$@" | tee "$summary_file"

generate_run=$(python - "$summary_file" <<'PY'
import json, sys
summary = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])
print(summary["runs"]["generate"])
PY
)

echo >&2
echo "== What the pipeline made" >&2
python - "$summary_file" <<'PY'
import json, sys
summary = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])
order = ["ingest", "preprocess", "train", "train-classifier", "generate", "label", "report"]
for stage in sorted(summary["counts"], key=lambda s: order.index(s) if s in order else 99):
    print(f"{stage:>17}: {json.dumps(summary['counts'][stage])}")
outputs = summary["outputs"]
for name in ("samples", "gif", "loss_curve", "contact_sheet", "report"):
    if name in outputs:
        print(f"{name:>17}: {outputs[name]}")
quality = outputs.get("quality")
if isinstance(quality, dict):
    print("          quality: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in quality.items()))
PY

echo >&2
echo "== Hive: labels of the generated images (run $generate_run)" >&2
hdp-gan sql --root "$root" \
  "SELECT label, count(*) AS images, round(avg(confidence), 3) AS mean_confidence
   FROM labels WHERE run_id = '$generate_run' AND status = 'ok'
   GROUP BY label ORDER BY images DESC"
echo >&2
echo "demo finished in $(( $(date +%s) - started )) s" >&2
