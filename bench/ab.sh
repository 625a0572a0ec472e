#!/usr/bin/env bash
# Interleaved A/B: the naive server and two MedServe nodes (A and B) are up at once and loaded in turn by wrk, one
# 4-s window each per round, over several rounds; each round's ratios are taken against the naive server's window of
# the same round, and the medians over the rounds are printed. On a shared machine whose speed drifts by 20-50% over
# minutes, this is what tells two builds or two settings apart (bench/run.sh measures every configuration once).
#   bench/ab.sh [rounds] [connections] [logreg|cnn] [json|binary]      # default 5 32 logreg json
#   B_ARGS="--MedServe:AuditInference false" bench/ab.sh                # one build, a switch on node B only
#   A_DLL=/tmp/before/medserve-silo.dll bench/ab.sh 5 32 cnn binary     # a saved build (A) against the current one (B)
# Environment: A_ARGS / B_ARGS (node switches), A_ENV / B_ENV ("VAR=value ..." for the node's process), A_DLL / B_DLL
# (default: this checkout's Release build). Needs wrk, python3 and the shared data (MEDSERVE_SHARED or ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
connections="${2:-32}"
model="${3:-logreg}"
encoding="${4:-json}"
shared="${MEDSERVE_SHARED:-../shared}"
command -v wrk >/dev/null || { echo "ab.sh: needs wrk (Debian: apt-get install wrk)" >&2; exit 2; }
case "$model" in
  logreg) name=breast-cancer-logreg; data="$shared/data/tabular/breast_cancer_test.csv" ;;
  cnn) name=ct-mr-classifier; data="$shared/data/images/ct_mr_test_images_11x1x64x64.f32" ;;
  *) echo "ab.sh: model '$model': one of logreg, cnn" >&2; exit 2 ;;
esac
case "$encoding" in json|binary) ;; *) echo "ab.sh: encoding '$encoding': one of json, binary" >&2; exit 2 ;; esac
[ -f "$data" ] || { echo "ab.sh: $data is missing (set MEDSERVE_SHARED)" >&2; exit 2; }
for project in silo bench/NaiveServer; do
  dotnet build -c Release --nologo -v q "$project" >/dev/null || dotnet build -c Release --nologo "$project"
done
a_dll="${A_DLL:-silo/bin/Release/net10.0/medserve-silo.dll}"
b_dll="${B_DLL:-silo/bin/Release/net10.0/medserve-silo.dll}"

work=$(mktemp -d)
key="bench-ab-key-0123456789abcdef"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# One request body (the first sample) and a wrk script that posts it.
python3 - "$model" "$encoding" "$data" "$work" "$key" <<'EOF'
import json, struct, sys
model, encoding, data, work, key = sys.argv[1:]
if model == "logreg":
    row = [float(v) for v in open(data).read().splitlines()[1].split(",")[:30]]
    name, shape, out = "input", [1, 30], "probabilities"
else:
    row = list(struct.unpack("<4096f", open(data, "rb").read(4096 * 4)))
    name, shape, out = "image", [1, 1, 64, 64], "probabilities"
headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
if encoding == "json":
    body = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": "FP32", "data": row}], "outputs": [{"name": out}]}).encode()
else:
    raw = struct.pack(f"<{len(row)}f", *row)
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": out, "parameters": {"binary_data": True}}]}).encode()
    body = header + raw
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header)), "Authorization": "Bearer " + key}
open(f"{work}/body", "wb").write(body)
with open(f"{work}/post.lua", "w") as f:
    f.write('wrk.method = "POST"\n')
    f.write(f'local f = io.open("{work}/body", "rb"); wrk.body = f:read("*a"); f:close()\n')
    for k, v in headers.items():
        f.write(f'wrk.headers["{k}"] = "{v}"\n')
EOF

start_node() { # label dll args env: starts a node, sets $node_port
  node_port=$(free_port)
  mkdir -p "$work/data-$1"
  env $4 MEDSERVE_ADMIN_KEY="$key" dotnet "$2" --urls "http://127.0.0.1:$node_port" --data "$work/data-$1" --import "samples/$name" \
    --silo-port "$(free_port)" --gateway-port "$(free_port)" --Logging:LogLevel:Default Warning \
    --MedServe:Limits:InferPerSecond 0 --MedServe:Tracing:Enabled false $3 > "$work/node-$1.log" 2>&1 &
  pids+=($!)
}
start_node a "$a_dll" "${A_ARGS:-}" "${A_ENV:-}"; port_a=$node_port
start_node b "$b_dll" "${B_ARGS:-}" "${B_ENV:-}"; port_b=$node_port
port_n=$(free_port)
dotnet bench/NaiveServer/bin/Release/net10.0/medserve-naive-server.dll --urls "http://127.0.0.1:$port_n" \
  --models "$name=samples/$name/model.onnx" > "$work/naive.log" 2>&1 &
pids+=($!)
pid_of() { ss -ltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }
ready() { curl -sf "http://127.0.0.1:$1/$2" -H "Authorization: Bearer $key" >/dev/null; }
for target in "$port_a v2/models/$name/ready" "$port_b v2/models/$name/ready" "$port_n v2/health/ready"; do
  set -- $target
  for _ in $(seq 1200); do ready "$1" "$2" && break; sleep 0.1; done
  ready "$1" "$2" || { echo "ab.sh: the server on port $1 did not become ready; the logs:" >&2; tail -n 20 "$work"/*.log >&2; exit 1; }
done
url() { echo "http://127.0.0.1:$1/v2/models/$name/infer"; }
for p in "$port_n" "$port_a" "$port_b"; do wrk -t1 -c"$connections" -d8s -s "$work/post.lua" "$(url "$p")" >/dev/null; done

# One window: requests per second and the server's CPU (utime + stime, 10 ms ticks) per request, in µs.
window() {
  local pid t0 t1 out n non2xx
  pid=$(pid_of "$1"); t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(wrk -t1 -c"$connections" -d4s -s "$work/post.lua" "$(url "$1")")
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  n=$(echo "$out" | awk '/requests in/{print $1}')
  non2xx=$(echo "$out" | awk '/Non-2xx/{print $NF}')
  [ -z "$non2xx" ] || { echo "ab.sh: $non2xx answers were not 2xx on port $1" >&2; exit 1; }
  echo "$(( n / 4 )) $(( (t1 - t0) * 10000 / (n > 0 ? n : 1) ))"
}
echo "$model $encoding, $connections connections, $rounds rounds of 4 s; A: ${A_DLL:-this build} ${A_ARGS:-} ${A_ENV:-}; B: ${B_DLL:-this build} ${B_ARGS:-} ${B_ENV:-}"
for r in $(seq "$rounds"); do
  # The order turns each round, so neither node always follows the naive server.
  if [ $(( r % 2 )) -eq 1 ]; then order="n a b"; else order="n b a"; fi
  line="round $r"
  for s in $order; do
    case $s in n) p=$port_n ;; a) p=$port_a ;; b) p=$port_b ;; esac
    res=$(window "$p") || exit 1
    line="$line $s:${res/ /:}"
  done
  echo "$line"
done | tee "$work/rounds"
python3 - "$work/rounds" <<'EOF'
import statistics as st, sys
rounds = []
for line in open(sys.argv[1]):
    fields = dict((s, (int(r), int(c))) for s, r, c in (f.split(":") for f in line.split()[2:]))
    rounds.append(fields)
print(f"naive: {st.median(r['n'][0] for r in rounds):,.0f} req/s, {st.median(r['n'][1] for r in rounds)} µs CPU a request (medians)")
for s, label in (("a", "A"), ("b", "B")):
    rps = [r[s][0] / r["n"][0] for r in rounds]
    cpu = [r[s][1] / max(1, r["n"][1]) for r in rounds]
    print(f"{label}: {st.median(rps):.2f}x the naive server's req/s ({min(rps):.2f}-{max(rps):.2f}), "
          f"{st.median(cpu):.2f}x its CPU a request ({min(cpu):.2f}-{max(cpu):.2f}), {st.median(r[s][1] for r in rounds)} µs")
ab = [r["b"][0] / r["a"][0] for r in rounds]
print(f"B over A: {st.median(ab):.2f}x req/s ({min(ab):.2f}-{max(ab):.2f})")
EOF
