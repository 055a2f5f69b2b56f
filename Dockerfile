# syntax=docker/dockerfile:1
#
# Emporium's two images from one build:
#
#   docker build --target emporium -t ghcr.io/emporium/emporium:dev .
#   docker build --target operator -t ghcr.io/emporium/emporium-operator:dev .
#
# `emporium` runs every microservice (`emporium serve <component>`, and
# `emporium migrate <component>` in the operator's migration Jobs);
# `operator` runs the Kubernetes operator. Both binaries come out of one
# `cargo build` in the shared `build` stage, so building the second target
# reuses the first one's build.
#
# Final stages: Google's distroless `cc` image (Debian 12): glibc, libgcc_s
# and CA certificates, no shell, no package manager, running as the
# `nonroot` user (65532). The binaries are dynamically linked against
# glibc: reqwest, lettre, kube and the Stripe client use rustls with the
# `ring` provider (no OpenSSL), and SQLite is compiled in, so they need
# nothing more from the image. The build stage is Debian 12 too, so the
# glibc they link against is the one they run on.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

# ---------------------------------------------------------------- build
FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS build
WORKDIR /src
# ring's assembly and the bundled SQLite need a C compiler: the slim image
# has gcc and libc6-dev already.
ENV CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_STRIP=symbols
COPY . .
# Cache mounts keep the registry and target/ between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin emporium --bin emporium-operator \
 && install -D -m 0755 target/release/emporium /out/emporium \
 && install -D -m 0755 target/release/emporium-operator /out/emporium-operator

# ---------------------------------------------------------------- emporium
FROM gcr.io/distroless/cc-debian12:nonroot AS emporium
LABEL org.opencontainers.image.title="emporium" \
      org.opencontainers.image.description="Emporium's services: emporium serve|migrate <component>" \
      org.opencontainers.image.source="https://github.com/emporium/emporium" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/emporium /usr/local/bin/emporium
USER 65532:65532
# Every service listens on 8080 (EMPORIUM_LISTEN).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/emporium"]
CMD ["--help"]

# ---------------------------------------------------------------- operator
# The last stage, so a plain `docker build .` builds the operator; name the
# target (--target emporium|operator) to be explicit.
FROM gcr.io/distroless/cc-debian12:nonroot AS operator
LABEL org.opencontainers.image.title="emporium-operator" \
      org.opencontainers.image.description="Emporium's Kubernetes operator" \
      org.opencontainers.image.source="https://github.com/emporium/emporium" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/emporium-operator /usr/local/bin/emporium-operator
USER 65532:65532
# /healthz, /readyz and /metrics (EMPORIUM_OPERATOR_LISTEN).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/emporium-operator"]
CMD ["run"]
