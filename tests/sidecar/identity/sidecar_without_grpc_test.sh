#!/bin/bash
# The sidecar binary must not load gRPC's libraries: its identity agent talks
# to the CA over identity/client:h2_transport, and libgrpc/libgrpc++ cost
# every sidecar ~6 MB of RSS and 7 threads (issue 4). Checks the ELF's own
# NEEDED entries and what the loader actually resolves (ldd), so that a new
# dependency that brings gRPC back, directly or through another library,
# fails here rather than in a memory benchmark.
set -u
bin="$1"

needed=$(readelf -d "$bin" | grep '(NEEDED)') || {
  echo "FAIL: readelf -d $bin printed no NEEDED entries"
  exit 1
}
# A check that cannot see the libraries the sidecar does use proves nothing.
for lib in libnghttp2 libssl libprotobuf; do
  grep -q "$lib" <<<"$needed" || {
    echo "FAIL: $lib missing from NEEDED; the check is not looking at the sidecar"
    echo "$needed"
    exit 1
  }
done
if grep -i grpc <<<"$needed"; then
  echo "FAIL: the sidecar links gRPC directly (above)"
  exit 1
fi
resolved=$(ldd "$bin") || {
  echo "FAIL: ldd $bin"
  exit 1
}
if grep -i grpc <<<"$resolved"; then
  echo "FAIL: the sidecar loads gRPC through another library (above)"
  exit 1
fi
echo "PASS: $(wc -l <<<"$needed") NEEDED entries, none of them gRPC"
