# syntax=docker/dockerfile:1
# meshguard-sidecar (and meshguardctl, for verify / policy check in the pod).
# Build from the repository root:
#   docker build -f deploy/docker/meshguard-sidecar.Dockerfile -t meshguard-sidecar:0.1.0 .
#
# Base: debian:bookworm-slim (see meshguard-ca.Dockerfile for why this tag).
# The build stage is the same as meshguard-ca's, so a second build reuses
# its cached layers.

# ---- build: the same Debian packages as scripts/setup.sh, then Bazel.
FROM debian:bookworm-slim AS build
WORKDIR /src
COPY . /src
# MESHGUARD_SETUP_NODE=0: the npm validators are for the test suite only.
RUN MESHGUARD_SETUP_NODE=0 bash scripts/setup.sh \
 && bazel --output_base=/tmp/bazel-ob build -c opt --strip=always --jobs=4 \
      //identity/ca:meshguard-ca //sidecar:meshguard-sidecar //cli:meshguardctl \
 && mkdir -p /out \
 && cp bazel-bin/identity/ca/meshguard-ca bazel-bin/sidecar/meshguard-sidecar \
       bazel-bin/cli/meshguardctl /out/ \
 && bazel --output_base=/tmp/bazel-ob shutdown \
 && rm -rf /var/lib/apt/lists/*

# ---- runtime: only the shared libraries the binaries link (ldd + dpkg -S).
# meshguard-sidecar links its libraries statically and needs only glibc
# (//bazel:static_link.bzl); the packages are meshguardctl's.
FROM debian:bookworm-slim AS meshguard-sidecar
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libabsl20220623 libc-ares2 libgrpc++1.51 libgrpc29 libprotobuf32 libre2-9 \
      libssl3 libstdc++6 libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1337 meshguard \
 && useradd --system --uid 1337 --gid 1337 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin meshguard
COPY --from=build /out/meshguard-sidecar /out/meshguardctl /usr/local/bin/
# uid 1337: the uid deploy/iptables/meshguard-iptables.sh exempts from
# redirection (MESHGUARD_PROXY_UID); change both together.
USER 1337:1337
# 15006 binds 0.0.0.0 by default; 15000 and 15001 bind 127.0.0.1 unless
# configured (deploy/k8s binds the admin port on 0.0.0.0 for the kubelet).
EXPOSE 15000 15001 15006
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/15000 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/meshguard-sidecar"]
