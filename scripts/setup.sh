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

# Pinned npm packages, each set installed with `npm ci` from its
# package.json and package-lock.json; quiet when that exact lock is already
# installed (a stamp of both files in DIR). MESHGUARD_SETUP_NODE=0 skips
# them (image builds).
#   npm_ci_pinned WHAT SRC DIR CHECK: SRC holds package.json and the lock;
#   DIR gets node_modules (the files are copied there when DIR is not SRC);
#   CHECK is one module that must be there afterwards.
npm_ci_pinned() {
  local what=$1 src=$2 dir=$3 check=$4 stamp want
  stamp="$dir/node_modules/.meshguard-lock.sha256"
  want=$(sha256sum "$src/package-lock.json" "$src/package.json" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$dir/node_modules/$check" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing Debian's npm (no npm came with nodejs)" >&2
    if ! ${SUDO:-} apt-get install -y -qq --no-install-recommends npm >/dev/null 2>&1; then
      echo "setup: apt-get install npm failed; install npm, then run setup again" >&2; return 1
    fi
  fi
  echo "setup: installing $what (npm ci) into $dir" >&2
  mkdir -p "$dir"
  if [ "$(cd "$src" && pwd -P)" != "$(cd "$dir" && pwd -P)" ]; then
    cp "$src/package.json" "$src/package-lock.json" "$dir/"
  fi
  local log
  log=$(mktemp)
  if ! npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
    echo "setup: npm ci in $dir failed (is the npm registry reachable?):" >&2
    tail -20 "$log" >&2; rm -f "$log"; return 1
  fi
  rm -f "$log"
  echo "$want" >"$stamp"
}

# The manifest validators of tests/deploy, into a fixed directory
# (MESHGUARD_NODE_DIR) that its sh_tests look in; the gRPC interop suite's
# grpc-js and proto-loader (tests/interop), in place: its test finds
# node_modules beside the real path of its package.json.
install_node_modules() {
  [ "${MESHGUARD_SETUP_NODE:-1}" = 0 ] && return 0
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  npm_ci_pinned "the manifest validators" "$here/tests/deploy" \
    "${MESHGUARD_NODE_DIR:-/var/cache/meshguard/node}" kubernetes-models &&
    npm_ci_pinned "the interop suite's gRPC for Node.js" "$here/tests/interop/node" \
      "$here/tests/interop/node" @grpc/grpc-js
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
