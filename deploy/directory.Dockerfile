# syntax=docker/dockerfile:1
#
# The did:sync directory (`directory`, package syncropel-directory).
# Build from the repository root:
#
#   docker build -f deploy/directory.Dockerfile -t syncropel/directory .
#
# Subcommands: `serve` (the default) and `migrate`. In a container give it a Postgres
# DATABASE_URL (the SQLite default needs a writable volume and allows a single replica).
# The runtime image has no shell: probe it over HTTP (`GET /health`, `GET /ready` on port 9300).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p syncropel-directory --bin directory \
    && install -D -s -m 0755 target/release/directory /out/directory

FROM ${RUNTIME_IMAGE}
# The repository the image is built from (set with --build-arg SOURCE_URL=...).
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="syncropel-directory" \
      org.opencontainers.image.description="The did:sync directory: signed operation logs, rotation and recovery" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/directory /usr/local/bin/directory
# The binary's default listen address is loopback, which nothing outside the container reaches.
ENV SYNCROPEL_LOG_FORMAT=json \
    DIRECTORY_LISTEN=0.0.0.0:9300
USER 65532:65532
# 9300: the directory API, /health and /ready. 9090: /metrics when
# DIRECTORY_METRICS_BIND=0.0.0.0:9090 is set (keep it off any public route).
EXPOSE 9300 9090
ENTRYPOINT ["/usr/local/bin/directory"]
CMD ["serve"]
