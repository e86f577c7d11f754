# syntax=docker/dockerfile:1
#
# The relay (`relay`, package syncropel-relay): queues records for peers whose source is offline.
# Build from the repository root:
#
#   docker build -f deploy/relay.Dockerfile -t syncropel/relay .
#
# Subcommands: `serve` (the default) and `migrate`. It needs a Postgres DATABASE_URL (any number
# of replicas share one database) and, to serve, RELAY_CURSOR_KEY (32+ characters, the same on
# every replica). The runtime image has no shell: probe it over HTTP (`GET /health`, `GET /ready`
# on port 9400).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p syncropel-relay --bin relay \
    && install -D -s -m 0755 target/release/relay /out/relay

FROM ${RUNTIME_IMAGE}
# The repository the image is built from (set with --build-arg SOURCE_URL=...).
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="syncropel-relay" \
      org.opencontainers.image.description="The Syncropel relay: signed envelopes queued for peers whose source is offline" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/relay /usr/local/bin/relay
# The binary's default listen address is loopback, which nothing outside the container reaches.
ENV SYNCROPEL_LOG_FORMAT=json \
    RELAY_LISTEN=0.0.0.0:9400
USER 65532:65532
# 9400: the relay API, /health and /ready. 9090: /metrics when
# RELAY_METRICS_BIND=0.0.0.0:9090 is set (keep it off any public route).
EXPOSE 9400 9090
ENTRYPOINT ["/usr/local/bin/relay"]
CMD ["serve"]
