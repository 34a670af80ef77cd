#!/usr/bin/env bash
# Builds {{NAME}}.wasm, a Runnel {{ROLE}} plugin, from app.js with componentize-js.
# Idempotent: componentize-js is installed on first use (npm, into
# ~/.cache/runnel/tools; Node.js and npm from apt when they are missing and root or sudo
# is at hand). `-d` leaves out the WASI features the agent does not grant (HTTP, ...).
set -euo pipefail
cd "$(dirname "$0")"
VERSION=0.23.0
TOOLS="${RUNNEL_TOOLS:-$HOME/.cache/runnel/tools}/componentize-js-$VERSION"
if ! command -v npm >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    echo "installing Node.js and npm (apt)" >&2
    $sudo apt-get install -y -q nodejs npm >&2 || {
        echo "build.sh: needs Node.js 18+ and npm (apt install nodejs npm)" >&2
        exit 1
    }
fi
if [ ! -d "$TOOLS" ]; then
    # Installed beside, then renamed into place: a build running at the same time never
    # sees half an installation.
    echo "installing componentize-js $VERSION into $TOOLS" >&2
    tmp="$TOOLS.tmp.$$"
    mkdir -p "$tmp"
    npm install --prefix "$tmp" --no-audit --no-fund --silent "@bytecodealliance/componentize-js@$VERSION" >&2
    mv -T "$tmp" "$TOOLS" 2>/dev/null || rm -rf "$tmp"
fi
"$TOOLS/node_modules/.bin/componentize-js" app.js --wit wit --world-name {{ROLE}}-plugin \
    -d stdio random clocks http fetch-event -o {{NAME}}.wasm
echo "built {{NAME}}.wasm; try it: runnel plugin test {{NAME}}.wasm {{TRY}}" >&2
echo "(in an agent config, give it memory_mb = 128: the JS engine needs more than the default)" >&2
