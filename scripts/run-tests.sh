#!/usr/bin/env bash
# Run the whole suite inside a private D-Bus session with an unlocked throwaway gnome-keyring,
# so the keychain tests meet a real Secret Service. HOME is a temp dir: the keyring file the
# tests create is disposable and never the user's own.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if command -v dbus-run-session >/dev/null && command -v gnome-keyring-daemon >/dev/null; then
    export BASTION_TEST_REAL_HOME="$HOME"
    HOME=$(mktemp -d)
    export HOME
    trap 'rm -rf "$HOME"' EXIT
    exec dbus-run-session -- bash -c '
        echo -n bastion-test | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1
        exec "$0" -m pytest "$@"' "$PY" "$@"
fi
exec "$PY" -m pytest "$@"
