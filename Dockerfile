# syntax=docker/dockerfile:1
# depprobe's container image: `docker build -t depprobe .`, then
#   docker run -v $PWD/depprobe.yaml:/etc/depprobe/depprobe.yaml:ro -p 9464:9464 depprobe
# The configuration must listen on 0.0.0.0 (agent.listen: 0.0.0.0:9464) for /metrics
# to be reachable from outside the container.

ARG RUST_VERSION=1.95

# Build stage: the release binary, stripped on install (27 MB instead of 127 MB
# with its line tables). The cache mounts keep the registry and target
# directory between builds, so a change of source rebuilds only the workspace.
FROM rust:${RUST_VERSION}-trixie AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p depprobe-agent --bin depprobe \
 && install -D -s -m 0755 target/release/depprobe /out/depprobe

# Runtime stage: the binary, the CA certificates the probes trust by default, and
# an unprivileged user. Same Debian release as the build stage, so glibc matches.
FROM debian:trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin depprobe \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/depprobe
COPY --from=build /out/depprobe /usr/local/bin/depprobe
USER 10001:10001
EXPOSE 9464

# /healthz over plain bash (no HTTP client in the image): exit 0 on "200" in the
# status line. Set DEPPROBE_HEALTH_PORT when agent.listen uses another port.
# Kubernetes: use httpGet probes on /healthz (liveness) and /readyz (readiness).
ENV DEPPROBE_HEALTH_PORT=9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${DEPPROBE_HEALTH_PORT:-9464} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r status <&3 && [[ $status == *' 200 '* ]]"]

ENTRYPOINT ["depprobe"]
CMD ["run", "-c", "/etc/depprobe/depprobe.yaml"]
