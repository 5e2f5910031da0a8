# Negative self-test for lint_dockerfiles.js: every line below breaks a rule.
FROM debian AS build
RUN apt-get install -y gcc
ADD https://example.com/tool.tar.gz /tmp/
FROM debian:latest
COPY --from=build /tmp/x /x
USER root
FROM build AS also-final
USER 0
