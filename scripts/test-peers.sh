#!/usr/bin/env bash
# Installs the Debian packages the end-to-end tests start as real peers, when missing
# (idempotent): mosquitto and mosquitto-clients (the mqtt source's broker and
# publisher), util-linux's logger (syslog), curl (http source), openssl (TLS
# certificates), systemd's journalctl and
# systemd-journal-remote (journald source), fuse3's fusermount3 (the power-cut file
# system, tests/powercut, mounts with mount(2) as root and falls back to it). As root or
# through sudo; exits non-zero, naming what is missing, when they cannot be installed.
# (The Kafka peers come from PyPI: tests/peers/kafka-tools.sh.)
set -euo pipefail

declare -A package_of=(
    [mosquitto]=mosquitto
    [mosquitto_pub]=mosquitto-clients
    [logger]=bsdutils
    [curl]=curl
    [openssl]=openssl
    [journalctl]=systemd
    [systemd-cat]=systemd
    # Writes the journal files the journald test reads (not on PATH).
    [/lib/systemd/systemd-journal-remote]=systemd-journal-remote
    [fusermount3]=fuse3
)
missing=()
for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null || [ -x "$tool" ] || missing+=("${package_of[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "test-peers: ${missing[*]} missing and no root to install them" >&2
        exit 1
    fi
fi
command -v apt-get >/dev/null || {
    echo "test-peers: ${missing[*]} missing and no apt-get to install them" >&2
    exit 1
}
echo "test-peers: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
    "${as_root[@]}" apt-get update -q >/dev/null || true
    "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
