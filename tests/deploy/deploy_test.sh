#!/usr/bin/env bash
# Runs the Node.js checks of tests/deploy from Bazel's runfiles:
#   deploy_test.sh manifests   deploy/k8s against the Kubernetes schemas and our rules
#   deploy_test.sh dockerfiles the Dockerfile lint on deploy/docker
#   deploy_test.sh negative    the checks must reject every file in testdata/
# Node.js and the pinned npm packages (tests/deploy/package-lock.json) come
# from scripts/setup.sh, which installs them into MESHGUARD_NODE_DIR
# (default /var/cache/meshguard/node). Missing, this test FAILS, not skips.
set -uo pipefail

node_dir=${MESHGUARD_NODE_DIR:-/var/cache/meshguard/node}
if ! command -v node >/dev/null 2>&1; then
  echo "FAIL: node not found on PATH ($PATH): run scripts/setup.sh (Debian package nodejs)" >&2
  exit 1
fi
for m in kubernetes-models js-yaml; do
  if [ ! -d "$node_dir/node_modules/$m" ]; then
    echo "FAIL: $node_dir/node_modules/$m is missing: run scripts/setup.sh (it installs tests/deploy/package-lock.json there)" >&2
    exit 1
  fi
done
export NODE_PATH="$node_dir/node_modules"

here=tests/deploy
validate=(node "$here/validate_manifests.js" --config-proto proto/config.proto)
lint=(node "$here/lint_dockerfiles.js" --context .)

# expect_failure FILE CHECKER SUBSTRING...: the checker must exit 1 on FILE
# and print every SUBSTRING.
failures=0
expect_failure() {
  local file=$1 checker=$2; shift 2
  local out rc
  if [ "$checker" = lint ]; then out=$("${lint[@]}" "$file" 2>&1); rc=$?
  else out=$("${validate[@]}" --files "$file" 2>&1); rc=$?; fi
  if [ $rc -ne 1 ]; then
    echo "FAIL: $file: the $checker check exited $rc, want 1 (it must reject this file)"; echo "$out"
    failures=$((failures + 1)); return
  fi
  local s
  for s in "$@"; do
    if ! grep -qF -- "$s" <<<"$out"; then
      echo "FAIL: $file: expected a problem containing: $s"; echo "$out"
      failures=$((failures + 1))
    fi
  done
  echo "ok: $file rejected ($(grep -c '^FAIL' <<<"$out") problem(s))"
}

case "${1:-}" in
  manifests)
    exec "${validate[@]}" --k8s-dir deploy/k8s ;;
  dockerfiles)
    exec "${lint[@]}" deploy/docker/meshguard-ca.Dockerfile \
      deploy/docker/meshguard-sidecar.Dockerfile deploy/docker/meshguard-init.Dockerfile ;;
  negative)
    t=$here/testdata
    expect_failure "$t/bad_schema.yaml" validate \
      "schema: data/spec/replicas must be integer" "containerPort must be integer"
    expect_failure "$t/bad_unknown_kind.yaml" validate 'unknown kind "Deploymnet"'
    expect_failure "$t/bad_secret_with_key.yaml" validate "holds a real private key"
    expect_failure "$t/bad_pod_security.yaml" validate \
      "may add only NET_ADMIN and NET_RAW" \
      "must be a native sidecar" \
      "resources.limits.memory is missing" \
      "readOnlyRootFilesystem must be true" \
      'image "meshguard-sidecar:latest" must be pinned' \
      "projected token audience must be meshguard-ca" \
      "expirationSeconds must be short" \
      "pod securityContext.runAsNonRoot must be true"
    expect_failure "$t/bad_sidecar_wiring.yaml" validate \
      "ca.adress: unknown field of CaClient" \
      "timeouts.drain: want a duration" \
      "needs a startupProbe or readinessProbe httpGet /readyz on port 15000" \
      "listeners.admin 127.0.0.1:15000 is not reachable" \
      "ca.token_file: /etc/meshguard/config/token" \
      'ConfigMap policy has no key "policy.yml"' \
      "meshguard-init exempts uid 1337"
    expect_failure "$t/bad_ca_token_review.yaml" validate \
      "kubernetes.token_review.cache_ttl: want a duration" \
      "kubernetes.token_review.token_file /var/run/secrets/kubernetes.io/serviceaccount/token has audience meshguard-ca" \
      "kubernetes.token_review.ca_file: /etc/kubernetes/ca.crt is not under any volumeMount" \
      "meshguard-system/meshguard-ca may not create tokenreviews"
    expect_failure "$t/bad.Dockerfile" lint \
      "FROM debian: no tag" "FROM debian:latest: latest is not a pin" \
      "ADD of a URL" "apt lists not removed" "USER 0: the final stage runs as root" \
      "USER root: use a numeric uid"
    if [ $failures -ne 0 ]; then echo "negative self-tests: $failures failure(s)"; exit 1; fi
    echo "negative self-tests: every broken file rejected" ;;
  *)
    echo "usage: $0 manifests|dockerfiles|negative" >&2; exit 2 ;;
esac
