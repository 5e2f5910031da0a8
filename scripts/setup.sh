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
  iproute2 iptables procps curl tcpdump
  # interop and TLS-scan tests (tests/interop, tests/tls): Python gRPC
  # (run with /usr/bin/python3), testssl.sh, bsdextrautils for its hexdump
  python3-grpcio python3-protobuf testssl.sh bsdextrautils
  # offline Kubernetes manifest validation (tests/deploy): Node.js + npm. The
  # machine's nodejs package (nodesource's, which bundles npm) satisfies this;
  # elsewhere Debian's nodejs is installed and npm below.
  nodejs
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The npm packages tests/deploy validates the Kubernetes manifests with,
# pinned by tests/deploy/package-lock.json, installed into a fixed directory
# (MESHGUARD_NODE_DIR) that the sh_tests look in. Quiet when that exact lock
# is already installed. MESHGUARD_SETUP_NODE=0 skips it (image builds).
install_node_modules() {
  [ "${MESHGUARD_SETUP_NODE:-1}" = 0 ] && return 0
  local here dir lock stamp want
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  dir=${MESHGUARD_NODE_DIR:-/var/cache/meshguard/node}
  lock="$here/tests/deploy/package-lock.json"
  stamp="$dir/.meshguard-lock.sha256"
  want=$(sha256sum "$lock" "$here/tests/deploy/package.json" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$dir/node_modules/kubernetes-models" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing Debian's npm (no npm came with nodejs)" >&2
    if ! ${SUDO:-} apt-get install -y -qq --no-install-recommends npm >/dev/null 2>&1; then
      echo "setup: apt-get install npm failed; install npm, then run setup again" >&2; return 1
    fi
  fi
  echo "setup: installing the manifest validators (npm ci) into $dir" >&2
  mkdir -p "$dir"
  cp "$here/tests/deploy/package.json" "$lock" "$dir/"
  local log
  log=$(mktemp)
  if ! npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
    echo "setup: npm ci in $dir failed (is the npm registry reachable?):" >&2
    tail -20 "$log" >&2; rm -f "$log"; return 1
  fi
  rm -f "$log"
  echo "$want" >"$stamp"
}

if [ ${#missing[@]} -eq 0 ]; then
  install_node_modules
  exit $?
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
install_node_modules || exit 1
echo "setup: done" >&2
