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
#   sidecar-obs/clickhouse:bookworm     Debian's ClickHouse server (18.16) and client on the
#                                       runtime base, for the `cluster` compose profile; made
#                                       only with --clickhouse (scripts/compose.sh passes it
#                                       when that profile is on). HTTP on 0.0.0.0:8123, native
#                                       protocol on 9000, data in /var/lib/clickhouse.
#
# An image that already exists is kept (pass --force to remake them all). The packages are
# cached in target/docker-base/debs. Needs a Debian-based host with apt-get and dpkg-deb.
#
# Usage: scripts/docker-base-images.sh [--force] [--no-prometheus] [--clickhouse]
set -euo pipefail

readonly RUNTIME_IMAGE=sidecar-obs/base-runtime:bookworm
readonly BUILD_IMAGE=sidecar-obs/base-build:bookworm
readonly PROMETHEUS_IMAGE=sidecar-obs/prometheus:bookworm
readonly CLICKHOUSE_IMAGE=sidecar-obs/clickhouse:bookworm
# The uid and gid of the `clickhouse` user, as in the upstream clickhouse/clickhouse-server
# image, so that a data volume can move between the two images.
readonly CLICKHOUSE_UID=101
readonly NONROOT_UID=65532
readonly NOBODY_UID=65534

root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/docker-base"
force=0
prometheus=1
clickhouse=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --no-prometheus) prometheus=0 ;;
        --clickhouse) clickhouse=1 ;;
        -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
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
if [ "$clickhouse" = 1 ]; then have_image "$CLICKHOUSE_IMAGE" || need+=(clickhouse); fi
if [ "${#need[@]}" = 0 ]; then
    say "base images present: $RUNTIME_IMAGE, $BUILD_IMAGE$([ "$prometheus" = 1 ] && echo ", $PROMETHEUS_IMAGE")$([ "$clickhouse" = 1 ] && echo ", $CLICKHOUSE_IMAGE")."
    exit 0
fi

# Fetches the packages into the cache; refreshes the package lists once if they are stale.
fetch() {
    mkdir -p "$work/debs"
    local missing=() pkg
    for pkg in $(printf '%s\n' "$@" | sort -u); do
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

# The packages a Debian package needs at run time: the closure of its Depends over shared
# libraries (lib*, zlib1g) and the package's own family. Maintainer-script tools (adduser,
# debconf) are left out: nothing here runs maintainer scripts.
runtime_closure() {
    local queue=("$@") seen=" " pkg dep
    while [ "${#queue[@]}" -gt 0 ]; do
        pkg="${queue[0]}"
        queue=("${queue[@]:1}")
        [[ "$seen" == *" $pkg "* ]] && continue
        seen+="$pkg "
        for dep in $(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances "$pkg" | awk '$1 ~ /^\|?(Pre)?Depends:$/ && $2 !~ /^</ {print $2}'); do
            case "$dep" in lib* | zlib1g | clickhouse-*) queue+=("$dep") ;; esac
        done
    done
    echo "$seen"
}

pkgs=(libc6 libgcc-s1)
[[ " ${need[*]} " == *" build "* ]] && pkgs+=(busybox-static)
[[ " ${need[*]} " == *" prometheus "* ]] && pkgs+=(prometheus)
clickhouse_pkgs=()
if [[ " ${need[*]} " == *" clickhouse "* ]]; then
    command -v apt-cache >/dev/null || die "apt-cache is needed to resolve clickhouse-server's libraries"
    read -r -a clickhouse_pkgs <<<"$(runtime_closure clickhouse-server clickhouse-client)"
    [ "${#clickhouse_pkgs[@]}" -gt 2 ] || die "apt-cache knows no clickhouse-server package (run apt-get update?)"
    # The server resolves its time zone (UTC here) in /usr/share/zoneinfo at start.
    clickhouse_pkgs+=(tzdata)
    pkgs+=("${clickhouse_pkgs[@]}")
fi
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

if [[ " ${need[*]} " == *" clickhouse "* ]]; then
    dir="$work/clickhouse"
    make_runtime_rootfs "$dir"
    unpack "$dir" "${clickhouse_pkgs[@]}"
    # Debian's package, minus what a container does not use: init scripts, documentation,
    # manual pages, locales.
    rm -rf "$dir/etc/init.d" "$dir/lib/systemd" "$dir/usr/share/doc" "$dir/usr/share/man" \
        "$dir/usr/share/locale" "$dir/usr/share/lintian"
    echo "clickhouse:x:$CLICKHOUSE_UID:$CLICKHOUSE_UID:clickhouse:/var/lib/clickhouse:/sbin/nologin" >>"$dir/etc/passwd"
    echo "clickhouse:x:$CLICKHOUSE_UID:" >>"$dir/etc/group"
    # Debian's config.xml as shipped, with the container's differences in config.d (merged by
    # the server over config.xml): every interface, logs on the console instead of files
    # under /var/log, UTC.
    mkdir -p "$dir/etc/clickhouse-server/config.d"
    cat >"$dir/etc/clickhouse-server/config.d/docker.xml" <<'XML'
<?xml version="1.0"?>
<yandex>
    <listen_host>0.0.0.0</listen_host>
    <logger>
        <level>information</level>
        <console>1</console>
        <log remove="remove"/>
        <errorlog remove="remove"/>
    </logger>
    <timezone>UTC</timezone>
</yandex>
XML
    # Server and client both read the local time zone at start.
    ln -sf /usr/share/zoneinfo/Etc/UTC "$dir/etc/localtime"
    # The data directory is the volume's mount point; a new named volume takes its owner.
    # The server writes its preprocessed config beside config.xml.
    mkdir -p "$dir/var/lib/clickhouse"
    chown -R "$CLICKHOUSE_UID:$CLICKHOUSE_UID" "$dir/var/lib/clickhouse" "$dir/etc/clickhouse-server"
    import "$dir" "$CLICKHOUSE_IMAGE" "$base_env" "USER $CLICKHOUSE_UID:$CLICKHOUSE_UID" \
        'ENV TZ=UTC' 'WORKDIR /var/lib/clickhouse' 'EXPOSE 8123 9000' 'VOLUME /var/lib/clickhouse' \
        'ENTRYPOINT ["/usr/sbin/clickhouse-server", "--config-file=/etc/clickhouse-server/config.xml"]'
fi
