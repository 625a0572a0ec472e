#!/usr/bin/env bash
# Runs the whole MedServe test suite on a fresh machine: installs what is missing, builds with
# warnings as errors, runs every test (unit, grain, API, real processes), prints a summary line.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v dotnet >/dev/null 2>&1; then
  echo "test.sh: the .NET 10 SDK is required (global.json pins 10.0.401); install it and run again" >&2
  exit 2
fi
if [ ! -d ../shared/data ] && [ -z "${MEDSERVE_SHARED:-}" ]; then
  echo "test.sh: the shared test data is missing: expected ../shared/data beside the checkout (or set MEDSERVE_SHARED)" >&2
  exit 2
fi
# Debian packages the suite needs, installed when missing: redis-server for the cluster tests
# (real silo processes joined through Redis), chromium for the web app's browser tests (driven by
# Playwright's bundled driver; no browser download), libgdcm-cil for DICOM decoding (GDCM's C# bindings: no DICOM
# package is served on NuGet), orthanc + orthanc-dicomweb as the real DICOMweb peer of the STOW-RS test.
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" \
    || { dpkg --configure -a; apt-get install -y -qq "${missing[@]}"; }
}
apt_install redis-server chromium libgdcm-cil orthanc orthanc-dicomweb

results="$(pwd)/TestResults"
rm -rf "$results"
dotnet build Cluster.sln -nologo -clp:ErrorsOnly
# The cuda build of the silo (ONNX Runtime's CUDA package, README "GPU build") under silo/bin/cuda/, beside the cpu
# build the tests use; Processes/CudaBuildTests starts it. About 75 s here (a 540 MB package on a cold cache).
cuda_start=$SECONDS
dotnet build silo -p:Accelerator=cuda -nologo -clp:ErrorsOnly
echo "test.sh: cuda build of the silo in $(( SECONDS - cuda_start )) s"
set +e
dotnet test tests/MedServe.Tests/MedServe.Tests.csproj --no-build -nologo \
  --logger "trx;LogFileName=medserve.trx" --logger "console;verbosity=normal" --results-directory "$results" "$@"
status=$?
set -e
trx="$results/medserve.trx"
if [ -f "$trx" ]; then
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  get() { echo "$counters" | sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p"; }
  passed=$(get passed); failed=$(get failed); total=$(get total); executed=$(get executed)
  skipped=$(( ${total:-0} - ${executed:-0} ))
  echo "${passed:-0} passed, ${failed:-0} failed, ${skipped} skipped"
fi
exit $status
