#!/usr/bin/env bash
# Installs every Debian package meshguard uses. Idempotent: quiet when all is
# already there; a clear error when apt fails.
set -euo pipefail

PACKAGES=(
  # build
  bazel-bootstrap bazel-platforms bazel-rules-java pkg-config g++ clang-format
  # contracts and control plane
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  # crypto, data plane, storage, config
  libssl-dev openssl android-libboringssl-dev libnghttp2-dev libevent-dev
  libsqlite3-dev sqlite3 libjwt-dev libyaml-cpp-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev python3
  # integration / e2e tools
  iproute2 iptables procps curl
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: need root to install: ${missing[*]}" >&2; exit 1
  fi
fi

echo "setup: installing ${#missing[@]} Debian package(s): ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! $SUDO apt-get update -qq >"$log" 2>&1; then
  echo "setup: apt-get update failed:" >&2; tail -20 "$log" >&2; rm -f "$log"; exit 1
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  echo "setup: apt-get install failed for: ${missing[*]}" >&2; tail -30 "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
echo "setup: done" >&2
