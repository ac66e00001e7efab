# syntax=docker/dockerfile:1
# FastHook: build with the Rust toolchain, run on a small Debian with a non-root user.
#   docker build -t fasthook .
#   docker run -p 8080:8080 -v fasthook-data:/data fasthook

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: it is rebuilt only when a manifest, the lock
# file or the vendored sled changes, not for every change of the gateway's code.
COPY Cargo.toml Cargo.lock ./
COPY bench/Cargo.toml bench/Cargo.toml
COPY vendor vendor
RUN mkdir -p src bench/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > bench/src/main.rs && touch bench/src/lib.rs \
    && cargo build --release --locked -p fasthook --bin fasthook \
    && rm -rf src bench/src
COPY . .
# The stubs' build left newer timestamps than the real sources may have.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked -p fasthook --bin fasthook \
    && cp target/release/fasthook /fasthook

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin fasthook \
    && mkdir -p /data /etc/fasthook \
    && chown fasthook:fasthook /data
COPY --from=build /fasthook /usr/local/bin/fasthook
COPY config/fasthook.toml /etc/fasthook/fasthook.toml
ENV FASTHOOK_DATA_DIR=/data \
    FASTHOOK_LISTEN=0.0.0.0:8080
VOLUME /data
EXPOSE 8080
USER fasthook
WORKDIR /data
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["fasthook", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["fasthook"]
CMD ["serve", "--config", "/etc/fasthook/fasthook.toml"]
