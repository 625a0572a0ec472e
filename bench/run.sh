#!/usr/bin/env bash
# One command: build Release (node, naive server, bench) and run every configuration side by side.
#   bench/run.sh [seconds-per-config] [concurrency,...] [bench options]
# e.g. bench/run.sh                 # 8 s per configuration, concurrency 1,8,32,128 (~12-14 min on 2 cores)
#      bench/run.sh 2 1,32 --label smoke
# Results: bench/results/bench-<stamp>[-label].{md,json}; the markdown table is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-8}"
concurrency="${2:-1,8,32,128}"
shift $(( $# > 2 ? 2 : $# ))
for project in silo bench/NaiveServer bench/MedServe.Bench; do
  dotnet build -c Release --nologo -v q "$project" >/dev/null || dotnet build -c Release --nologo "$project"
done
exec dotnet bench/MedServe.Bench/bin/Release/net10.0/MedServe.Bench.dll "$seconds" "$concurrency" "$@"
