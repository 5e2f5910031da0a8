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

# The code that runs is linked first and together (sidecar/hot_text.ld,
# scripts/sidecar-hot-text.sh): the kernel maps 64 KB around each page
# fault, so spread over all 6 MB it kept ~1.7 MB more resident. A pattern
# format the linker no longer matches would leave the section empty.
hot=$(readelf -SW "$bin" | awk '$2 == ".text.meshguard_hot" {print $4, $6}')
[ -n "$hot" ] || {
  echo "FAIL: no .text.meshguard_hot section; sidecar/hot_text.ld was not used"
  exit 1
}
read -r hot_start hot_size <<<"$hot"
hot_start=$((16#$hot_start))
hot_end=$((hot_start + 16#$hot_size))
if [ $((hot_end - hot_start)) -lt $((1024 * 1024)) ]; then
  echo "FAIL: .text.meshguard_hot holds $((hot_end - hot_start)) bytes; sidecar/hot_text.ld matched little"
  exit 1
fi
# One function per library on the per-call path (ours, nghttp2, OpenSSL,
# libevent) must be inside it.
addresses=$(nm --defined-only "$bin" 2>/dev/null)
for sym in nghttp2_session_mem_recv2 nghttp2_session_mem_recv SSL_read_ex \
  event_base_loop _ZN9meshguard7sidecar5proxy12Http2Session7ReceiveEPKhm; do
  address=$(awk -v s="$sym" '$3 == s {print $1; exit}' <<<"$addresses")
  [ -n "$address" ] || continue
  address=$((16#$address))
  if [ "$address" -lt "$hot_start" ] || [ "$address" -ge "$hot_end" ]; then
    echo "FAIL: $sym is outside .text.meshguard_hot; regenerate sidecar/hot_text.ld (scripts/sidecar-hot-text.sh)"
    exit 1
  fi
  checked="${checked:-}$sym "
done
[ -n "${checked:-}" ] || {
  echo "FAIL: none of the per-call functions was found in $bin"
  exit 1
}
echo "PASS: NEEDED only $(tr '\n' ' ' <<<"$needed"); OpenSSL, nghttp2, libevent and protobuf inside; no gRPC; hot text holds $checked"
