# Strata CSI plugin image: strata-csi (the CSI plugin, ENTRYPOINT) and stratactl (admin CLI).
#
#   buildah bud -t strata-csi:0.1.0 .        (or: docker build -t strata-csi:0.1.0 .)
#
# Two stages: a Debian bookworm builder with the -dev packages, and a bookworm-slim runtime with
# only the shared libraries the binaries link against plus the filesystem tools the drivers call.
# Tests do not run here (CI runs them); tests/chart/dockerfile_libs_test.sh checks that the runtime
# package list below covers every library the built binaries need.

ARG DEBIAN_RELEASE=bookworm

FROM debian:${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates cmake ninja-build g++ pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev \
      prometheus-cpp-dev libdevmapper-dev libmount-dev libarchive-dev libsqlite3-dev \
      libssl-dev nlohmann-json3-dev libbtrfsutil-dev libgtest-dev libgmock-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Release build of the two binaries only; the top-level configure also sets up the tests (it
# needs GoogleTest's CMake config), but nothing else is compiled.
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build --target strata-csi stratactl -j"$(nproc)" \
 && mkdir -p /out \
 && for bin in strata-csi stratactl; do \
      path="$(find /build -type f -name "$bin" -perm -u+x | head -n1)"; \
      test -n "$path" && install -m 0755 -s "$path" "/out/$bin"; \
    done

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# Runtime libraries (one line per -dev package of the builder) and the tools the drivers and
# admins use on a node: mount/umount, mkfs.ext4/xfs, btrfs, thin_check & co, dmsetup.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libgrpc++1.51 \
      libprotobuf32 \
      libabsl20220623 \
      libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 \
      libdevmapper1.02.1 \
      libmount1 \
      libarchive13 \
      libsqlite3-0 \
      libssl3 \
      libbtrfsutil1 \
      util-linux \
      mount \
      e2fsprogs \
      xfsprogs \
      btrfs-progs \
      thin-provisioning-tools \
      dmsetup \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/strata-csi /out/stratactl /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/strata-csi"]
