# syntax=docker/dockerfile:1
#
# The hosted multi-tenant steward (`steward`, package syncropel-steward).
# Build from the repository root:
#
#   docker build -f deploy/steward.Dockerfile -t syncropel/steward .
#
# Subcommands: `serve` (the default), `migrate`, `rotate-kek`; every flag has an environment
# fallback (docs/operations.md). The runtime image has no shell: probe it over HTTP
# (`GET /health`, `GET /ready` on port 8080).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# The registry and target directories are BuildKit caches shared by the images, so a
# rebuild only compiles what changed. The binary is copied out of the cache in the same step,
# stripped: the debug info the release profile keeps for profiling would make it seven times larger.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p syncropel-steward --bin steward \
    && install -D -s -m 0755 target/release/steward /out/steward

FROM ${RUNTIME_IMAGE}
# The repository the image is built from (set with --build-arg SOURCE_URL=...).
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="syncropel-steward" \
      org.opencontainers.image.description="The hosted Syncropel steward: many tenants on one Postgres" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/steward /usr/local/bin/steward
ENV SYNCROPEL_LOG_FORMAT=json \
    STEWARD_BIND=0.0.0.0:8080
USER 65532:65532
# 8080: tenants, the platform host, /health and /ready. 9090: /metrics when
# STEWARD_METRICS_BIND=0.0.0.0:9090 is set (keep it off any public route).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/steward"]
CMD ["serve"]
