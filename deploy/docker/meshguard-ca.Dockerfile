# syntax=docker/dockerfile:1
# meshguard-ca (and meshguardctl, for `kubectl exec ... meshguardctl revoke`).
# Build from the repository root:
#   docker build -f deploy/docker/meshguard-ca.Dockerfile -t meshguard-ca:0.1.0 .
#
# Base: debian:bookworm-slim, the tag of Debian 12's current point release:
# the runtime libraries below are bookworm's (gRPC 1.51, Protobuf 3.21,
# OpenSSL 3), the same the binaries are built and tested against, and the tag
# picks up security updates when rebuilt. For a byte-reproducible release,
# pin the digest as well (debian:bookworm-slim@sha256:...).

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
FROM debian:bookworm-slim AS meshguard-ca
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libabsl20220623 libc-ares2 libgrpc++1.51 libgrpc29 libprotobuf32 libre2-9 \
      libssl3 libstdc++6 libyaml-cpp0.7 libsqlite3-0 libjwt0 \
      libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7 \
      libevent-openssl-2.1-7 libevent-pthreads-2.1-7 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 meshguard \
 && useradd --system --uid 65532 --gid 65532 --no-create-home \
      --home-dir /var/lib/meshguard-ca --shell /usr/sbin/nologin meshguard \
 && install -d -o 65532 -g 65532 -m 0700 /var/lib/meshguard-ca
COPY --from=build /out/meshguard-ca /out/meshguardctl /usr/local/bin/
USER 65532:65532
# The ports of the deploy/k8s config, which binds them on 0.0.0.0; the
# binary alone binds 127.0.0.1 (give --listen / --admin-listen with docker run).
EXPOSE 15012 15014
# The admin HTTP endpoint (admin_http_listen, 127.0.0.1:15014 by default).
# No curl in the image: bash's /dev/tcp speaks enough HTTP for /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/15014 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/meshguard-ca"]
CMD ["serve", "--data-dir=/var/lib/meshguard-ca"]
