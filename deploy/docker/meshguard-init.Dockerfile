# syntax=docker/dockerfile:1
# meshguard-init: the pod's iptables init step for transparent interception
# (deploy/iptables/meshguard-iptables.sh, configured by MESHGUARD_* env).
# Build from the repository root:
#   docker build -f deploy/docker/meshguard-init.Dockerfile -t meshguard-init:0.1.0 .
#
# Base: debian:bookworm-slim (see meshguard-ca.Dockerfile for why this tag).
# bookworm's iptables is the nft backend; on nodes still using the legacy
# backend set IPTABLES=iptables-legacy in the container's env.
FROM debian:bookworm-slim AS meshguard-init
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/iptables/meshguard-iptables.sh /usr/local/bin/meshguard-iptables
RUN chmod 0755 /usr/local/bin/meshguard-iptables
# lint-allow root-user: iptables needs uid 0 with CAP_NET_ADMIN in the pod's
# network namespace; with no_new_privs (allowPrivilegeEscalation: false) a
# non-root uid cannot gain it from file capabilities. The pod grants only
# NET_ADMIN and NET_RAW, and the container exits when the rules are in.
USER 0:0
# lint-allow no-healthcheck: runs once and exits.
ENTRYPOINT ["/usr/local/bin/meshguard-iptables"]
