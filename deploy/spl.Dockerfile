# syntax=docker/dockerfile:1
#
# The `spl` CLI with its local steward (`spl serve`, SQLite in the home), package spl.
# Build from the repository root:
#
#   docker build -f deploy/spl.Dockerfile -t syncropel/spl .
#   docker run -d --name spl -p 9100:9100 -v spl-data:/data syncropel/spl
#   docker exec spl spl service-account create --bootstrap --name admin --scopes admin --with-token
#
# The home (identity key, hub.db, steward.json) is the /data volume; `spl serve` creates it on
# first start (`docker run --rm -v spl-data:/data syncropel/spl init` does so ahead of time and
# prints the DID). Authentication is on: every /v1 route answers 503 BOOTSTRAP_REQUIRED until the
# first service account exists.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p spl --bin spl \
    && install -D -s -m 0755 target/release/spl /out/spl \
    && install -d -m 0700 /out/rootfs/data

FROM ${RUNTIME_IMAGE}
# The repository the image is built from (set with --build-arg SOURCE_URL=...).
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="syncropel-spl" \
      org.opencontainers.image.description="The Syncropel CLI and local steward (SQLite)" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/spl /usr/local/bin/spl
# /data is copied as an entry of a directory whose contents are copied, so --chown applies to
# it (a copied directory's own entry would not be); a new named volume takes its owner and mode.
COPY --from=builder --chown=65532:65532 /out/rootfs/ /
# mDNS needs the host's LAN, which a container on a bridge network does not see; with
# `--network host` turn it back on with `-e SPL_NO_MDNS=false`.
ENV SYNCROPEL_HOME=/data \
    SPL_NO_MDNS=true
VOLUME ["/data"]
USER 65532:65532
EXPOSE 9100
ENTRYPOINT ["/usr/local/bin/spl"]
CMD ["serve", "--host", "0.0.0.0"]
