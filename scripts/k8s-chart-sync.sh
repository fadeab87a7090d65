#!/usr/bin/env bash
# Copy the monitoring engineer's single sources of truth into the chart (helm cannot read
# outside the chart directory): monitoring/alerts.yaml and monitoring/dashboards/*.json ->
# charts/movierec/files/monitoring/. tests/k8s/test_chart_sync.py fails when they drift.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/monitoring"
DST="$ROOT/charts/movierec/files/monitoring"
rm -rf "$DST"
mkdir -p "$DST/dashboards"
if [[ -f "$SRC/alerts.yaml" ]]; then cp "$SRC/alerts.yaml" "$DST/alerts.yaml"; fi
shopt -s nullglob
for f in "$SRC"/dashboards/*.json; do cp "$f" "$DST/dashboards/"; done
touch "$DST/dashboards/.keep"
echo "chart-sync: $(find "$DST" -type f ! -name .keep | wc -l) monitoring file(s) -> ${DST#"$ROOT"/}" >&2
