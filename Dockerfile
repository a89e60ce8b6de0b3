# syntax=docker/dockerfile:1
#
# kubestream container image: a static binary on distroless, run as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t kubestream .
#
# hack/check-packaging.sh checks this file without a Docker engine and runs
# its go build command on the host, so keep the build in one RUN with go build.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, in their own layer: it is rebuilt only when go.mod or go.sum
# change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# Static (no cgo), reproducible paths (-trimpath), no symbol tables (-s -w).
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/kubestream ./cmd/kubestream

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="kubestream" \
      org.opencontainers.image.description="Change-data-capture for the Kubernetes API: object changes as protobuf events on Kafka or NATS JetStream" \
      org.opencontainers.image.source="https://github.com/kubestream/kubestream" \
      org.opencontainers.image.url="https://github.com/kubestream/kubestream" \
      org.opencontainers.image.documentation="https://github.com/kubestream/kubestream/blob/main/docs/deploy.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /out/kubestream /kubestream
# The numeric id of distroless's "nonroot" user, so Kubernetes' runAsNonRoot
# can verify it without reading /etc/passwd.
USER 65532:65532
# --listen-address default: /metrics, /healthz, /readyz.
EXPOSE 8080
ENTRYPOINT ["/kubestream"]
CMD ["run"]
