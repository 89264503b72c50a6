#!/usr/bin/env bash
# Makes the local base images that let the stack build and run with no image registry.
#
# Each image is a root filesystem unpacked from Debian packages, fetched with
# `apt-get download` from the host's own apt sources (Debian 12 "bookworm" on the machines
# this project targets), then loaded with `docker import`. Taking glibc from the host's
# release is what lets the host's release binaries run in the image unchanged.
#
#   sidecar-obs/base-runtime:bookworm   glibc and libgcc only, plus a non-root user
#                                       (uid 65532, as in distroless): the runtime stage.
#   sidecar-obs/base-build:bookworm     the same plus busybox: the build stage, which here
#                                       only copies the host's release binaries.
#   sidecar-obs/prometheus:bookworm     Debian's Prometheus on the runtime base, for the
#                                       optional `prometheus` compose profile.
#
# An image that already exists is kept (pass --force to remake them all). The packages are
# cached in target/docker-base/debs. Needs a Debian-based host with apt-get and dpkg-deb.
#
# Usage: scripts/docker-base-images.sh [--force] [--no-prometheus]
set -euo pipefail

readonly RUNTIME_IMAGE=sidecar-obs/base-runtime:bookworm
readonly BUILD_IMAGE=sidecar-obs/base-build:bookworm
readonly PROMETHEUS_IMAGE=sidecar-obs/prometheus:bookworm
readonly NONROOT_UID=65532
readonly NOBODY_UID=65534

root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/docker-base"
force=0
prometheus=1
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --no-prometheus) prometheus=0 ;;
        -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "docker-base-images: unknown argument $arg" >&2; exit 2 ;;
    esac
done

say() { echo "docker-base-images: $*" >&2; }
die() { say "error: $*"; exit 1; }

have_image() { [ "$force" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

command -v docker >/dev/null || die "docker is not installed"
command -v apt-get >/dev/null || die "apt-get is needed to fetch Debian packages (a Debian or Ubuntu host)"
command -v dpkg-deb >/dev/null || die "dpkg-deb is needed to unpack Debian packages"

need=()
have_image "$RUNTIME_IMAGE" || need+=(runtime)
have_image "$BUILD_IMAGE" || need+=(build)
if [ "$prometheus" = 1 ]; then have_image "$PROMETHEUS_IMAGE" || need+=(prometheus); fi
if [ "${#need[@]}" = 0 ]; then
    say "base images present: $RUNTIME_IMAGE, $BUILD_IMAGE$([ "$prometheus" = 1 ] && echo ", $PROMETHEUS_IMAGE")."
    exit 0
fi

# Fetches the packages into the cache; refreshes the package lists once if they are stale.
fetch() {
    mkdir -p "$work/debs"
    local missing=()
    for pkg in "$@"; do
        compgen -G "$work/debs/${pkg}_*.deb" >/dev/null || missing+=("$pkg")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    say "fetching Debian packages: ${missing[*]}"
    # apt's sandbox user cannot write into root's tree; the download is verified by apt.
    if ! (cd "$work/debs" && apt-get download -o APT::Sandbox::User=root "${missing[@]}" >/dev/null 2>"$work/apt.err"); then
        say "apt-get download failed; refreshing package lists"
        if [ "$(id -u)" = 0 ]; then apt-get update >/dev/null 2>>"$work/apt.err" || true
        elif command -v sudo >/dev/null; then sudo apt-get update >/dev/null 2>>"$work/apt.err" || true
        fi
        (cd "$work/debs" && apt-get download -o APT::Sandbox::User=root "${missing[@]}" >/dev/null 2>>"$work/apt.err") ||
            die "cannot download ${missing[*]}: $(tail -n 3 "$work/apt.err")"
    fi
}

unpack() { # unpack DIR PKG...
    local dir="$1"; shift
    for pkg in "$@"; do
        dpkg-deb -x "$(compgen -G "$work/debs/${pkg}_*.deb" | head -n 1)" "$dir"
    done
}

# The runtime root filesystem: the dynamic loader, glibc, libgcc_s, users, name service.
make_runtime_rootfs() {
    local dir="$1"
    rm -rf "$dir" && mkdir -p "$dir"
    unpack "$dir" libc6 libgcc-s1
    # Programs and data nothing here uses: iconv modules, tools, documentation.
    rm -rf "$dir/usr/lib/x86_64-linux-gnu/gconv" "$dir/usr/bin" "$dir/usr/sbin" "$dir/sbin" \
        "$dir/usr/share" "$dir/usr/libexec"
    mkdir -p "$dir/etc" "$dir/tmp" "$dir/usr/local/bin" "$dir/home/nonroot"
    chmod 1777 "$dir/tmp"
    chown "$NONROOT_UID:$NONROOT_UID" "$dir/home/nonroot"
    cat >"$dir/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
nobody:x:$NOBODY_UID:$NOBODY_UID:nobody:/nonexistent:/sbin/nologin
nonroot:x:$NONROOT_UID:$NONROOT_UID:nonroot:/home/nonroot:/sbin/nologin
PASSWD
    cat >"$dir/etc/group" <<GROUP
root:x:0:
nogroup:x:$NOBODY_UID:
nonroot:x:$NONROOT_UID:
GROUP
    # Container names resolve through Docker's DNS: files first (/etc/hosts), then dns.
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$dir/etc/nsswitch.conf"
}

import() { # import DIR IMAGE CHANGE...
    local dir="$1" image="$2"; shift 2
    local changes=()
    for c in "$@"; do changes+=(--change "$c"); done
    tar --numeric-owner -C "$dir" -c . | docker import "${changes[@]}" - "$image" >/dev/null
    say "made $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'))."
}

pkgs=(libc6 libgcc-s1)
[[ " ${need[*]} " == *" build "* ]] && pkgs+=(busybox-static)
[[ " ${need[*]} " == *" prometheus "* ]] && pkgs+=(prometheus)
fetch "${pkgs[@]}"

base_env='ENV PATH=/usr/local/bin:/usr/bin:/bin'

if [[ " ${need[*]} " == *" runtime "* ]]; then
    make_runtime_rootfs "$work/runtime"
    import "$work/runtime" "$RUNTIME_IMAGE" "$base_env" "USER $NONROOT_UID:$NONROOT_UID"
fi

if [[ " ${need[*]} " == *" build "* ]]; then
    make_runtime_rootfs "$work/build"
    unpack "$work/build" busybox-static
    rm -rf "$work/build/usr/share"
    for tool in sh cp mkdir chown chmod ln rm test [ ls cat true install strip; do
        ln -sf /bin/busybox "$work/build/bin/$tool"
    done
    import "$work/build" "$BUILD_IMAGE" "$base_env" 'WORKDIR /src'
fi

if [[ " ${need[*]} " == *" prometheus "* ]]; then
    make_runtime_rootfs "$work/prometheus"
    mkdir -p "$work/prometheus-pkg"
    unpack "$work/prometheus-pkg" prometheus
    mkdir -p "$work/prometheus/bin" "$work/prometheus/etc/prometheus" "$work/prometheus/prometheus"
    cp "$work/prometheus-pkg/usr/bin/prometheus" "$work/prometheus-pkg/usr/bin/promtool" "$work/prometheus/bin/"
    chown "$NOBODY_UID:$NOBODY_UID" "$work/prometheus/prometheus"
    rm -rf "$work/prometheus-pkg"
    # The same entry point, user and paths as the upstream prom/prometheus image.
    import "$work/prometheus" "$PROMETHEUS_IMAGE" "$base_env" "USER $NOBODY_UID:$NOBODY_UID" \
        'WORKDIR /prometheus' 'EXPOSE 9090' 'ENTRYPOINT ["/bin/prometheus"]' \
        'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
fi
