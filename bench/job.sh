#!/usr/bin/env bash
# A 200,000-row CSV job on breast-cancer-logreg (issue 11, point 5): submit time, run time, rows per second and the
# silo's RSS, on a fresh Release node. Each round submits different item ids (a job without an id is the same job when
# its body is the same), so round 2 onward shows a node whose code is already compiled.
#   bench/job.sh [rounds]        # default 2; ~30 s a round on 2 cores
# Compare "rows/s" with the online figure of a bench run (bench/run.sh: logreg, HTTP JSON, concurrency 32).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"
shared="${MEDSERVE_SHARED:-../shared}"
[ -f "$shared/data/tabular/breast_cancer_test.csv" ] || { echo "job.sh: $shared/data/tabular/breast_cancer_test.csv is missing" >&2; exit 2; }
dotnet build -c Release --nologo -v q silo >/dev/null || dotnet build -c Release --nologo silo

work=$(mktemp -d)
key="bench-job-key-0123456789abcdef"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port); silo_port=$(free_port); gateway_port=$(free_port)
node_pid=""
cleanup() { [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

python3 - "$shared/data/tabular/breast_cancer_test.csv" "$work" "$rounds" <<'EOF'
import sys
src, work, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(src).read().splitlines()
header, rows = lines[0], lines[1:]
for r in range(1, rounds + 1):
    with open(f"{work}/job{r}.csv", "w") as f:
        f.write("id," + header + "\n")
        for i in range(200_000):
            f.write(f"r{r}-{i}," + rows[i % len(rows)] + "\n")
EOF

MEDSERVE_ADMIN_KEY="$key" dotnet silo/bin/Release/net10.0/medserve-silo.dll --urls "http://127.0.0.1:$port" --data "$work/data" \
  --import samples/breast-cancer-logreg --silo-port "$silo_port" --gateway-port "$gateway_port" --Logging:LogLevel:Default Warning \
  --MedServe:Limits:InferPerSecond 0 > "$work/node.log" 2>&1 &
node_pid=$!
auth="Authorization: Bearer $key"
base="http://127.0.0.1:$port"
until curl -sf "$base/v2/models/breast-cancer-logreg/ready" -H "$auth" >/dev/null; do
  kill -0 "$node_pid" 2>/dev/null || { echo "job.sh: the node stopped:" >&2; tail -20 "$work/node.log" >&2; exit 1; }
  sleep 0.2
done
rss() { awk '/VmRSS/{print int($2/1024)}' "/proc/$node_pid/status"; }
for r in $(seq "$rounds"); do
  before=$(rss)
  t0=$(date +%s.%N)
  id=$(curl -sf -H "$auth" -X POST "$base/api/jobs?model=breast-cancer-logreg&outputs=probabilities" -H 'Content-Type: text/csv' \
    --data-binary "@$work/job$r.csv" | python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
  t1=$(date +%s.%N)
  peak=$before
  while true; do
    state=$(curl -sf -H "$auth" "$base/api/jobs/$id" | python3 -c 'import sys, json; j = json.load(sys.stdin); print(j["state"], j["succeeded"], j["failed"])')
    now=$(rss); [ "$now" -gt "$peak" ] && peak=$now
    case "$state" in Completed*|Failed*|Cancelled*) break ;; esac
    sleep 0.2
  done
  t2=$(date +%s.%N)
  python3 -c "
s, r = $t1 - $t0, $t2 - $t1
print(f'round $r: submit {s:.1f} s, run {r:.1f} s: {200000 / r:,.0f} rows/s after submit, {200000 / (s + r):,.0f} end to end; '
      f'RSS {$before} -> peak {$peak} MB (+{$peak - $before}); $state')"
done
