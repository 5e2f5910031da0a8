#!/bin/bash
# What the shipped sidecar binary links (issue 4):
# - no gRPC: its identity agent talks to the CA over
#   identity/client:h2_transport, and libgrpc/libgrpc++ cost every sidecar
#   ~6 MB of RSS and 7 threads;
# - its system libraries (OpenSSL, nghttp2, libevent, protobuf, Abseil,
#   yaml-cpp, libstdc++) linked statically, glibc shared
#   (//bazel:static_link.bzl), relocations packed: 14.5 -> ~10 MB RSS idle.
# Checks the ELF's NEEDED entries, what the loader resolves (ldd) and the
# symbols linked in, so that a dependency that brings gRPC or a shared system
# library back fails here rather than in a memory benchmark.
set -u
bin="$1"

needed=$(readelf -d "$bin" | grep '(NEEDED)' | sed 's/.*\[\(.*\)\]/\1/') || {
  echo "FAIL: readelf -d $bin printed no NEEDED entries"
  exit 1
}
unexpected=$(grep -v -E '^(libc|libm|ld-linux-x86-64|libdl|libpthread|librt)\.so' <<<"$needed")
if [ -n "$unexpected" ]; then
  echo "FAIL: the sidecar loads shared libraries beyond glibc's; linked statically they cost less memory per pod:"
  echo "$unexpected"
  exit 1
fi
# Relative relocations packed (DT_RELR): 7.5 KB instead of 640 KB read at
# every start (sidecar/BUILD.bazel).
if ! readelf -d "$bin" | grep -q '(RELR)'; then
  echo "FAIL: no DT_RELR entry; the sidecar is not linked with -z pack-relative-relocs"
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

# The libraries are in the binary itself, so look at its symbols. A check
# that cannot see the libraries the sidecar does use proves nothing.
symbols=$(nm --defined-only "$bin" 2>/dev/null | awk '{print $NF}')
[ -n "$symbols" ] || {
  echo "FAIL: nm found no symbols in $bin (stripped?); cannot check what it links"
  exit 1
}
for sym in nghttp2_session_server_new SSL_CTX_new event_base_new_with_config \
  _ZN6google8protobuf11MessageLite14ParseFromArrayEPKvi; do
  grep -q -x -F "$sym" <<<"$symbols" || {
    echo "FAIL: $sym is not in the binary; the check is not looking at the sidecar"
    exit 1
  }
done
grpc=$(grep -E '^(grpc_|_ZN4grpc)' <<<"$symbols" | head -5)
if [ -n "$grpc" ]; then
  echo "FAIL: gRPC is linked into the sidecar:"
  echo "$grpc"
  exit 1
fi
echo "PASS: NEEDED only $(tr '\n' ' ' <<<"$needed"); OpenSSL, nghttp2, libevent and protobuf inside; no gRPC"
