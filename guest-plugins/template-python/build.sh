#!/usr/bin/env bash
# Builds {{NAME}}.wasm, a Runnel {{ROLE}} plugin, from app.py with componentize-py.
# Idempotent: componentize-py is installed on first use (pip, into
# ~/.cache/runnel/tools; no root or venv needed).
set -euo pipefail
cd "$(dirname "$0")"
VERSION=0.25.1
TOOLS="${RUNNEL_TOOLS:-$HOME/.cache/runnel/tools}/componentize-py-$VERSION"
if [ ! -d "$TOOLS" ]; then
    # Installed beside, then renamed into place: a build running at the same time never
    # sees half an installation.
    echo "installing componentize-py $VERSION into $TOOLS" >&2
    tmp="$TOOLS.tmp.$$"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$tmp" "componentize-py==$VERSION"
    mkdir -p "$(dirname "$TOOLS")"
    mv -T "$tmp" "$TOOLS" 2>/dev/null || rm -rf "$tmp"
fi
PYTHONPATH="$TOOLS" python3 -c 'import sys; from componentize_py import script; sys.exit(script())' \
    -d wit -w {{ROLE}}-plugin componentize app -o {{NAME}}.wasm
echo "built {{NAME}}.wasm; try it: runnel plugin test {{NAME}}.wasm {{TRY}}" >&2
