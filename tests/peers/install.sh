#!/usr/bin/env bash
# Installs the real Salesforce clients the proxy is tested with, unmodified, into
# target/peers (never committed): simple-salesforce from PyPI in a Python venv, jsforce from
# npm. Idempotent and safe to run from parallel tests (one flock). Prints nothing on success
# when already installed. Versions are pinned so a test run means the same thing next year;
# jsforce 3.10.19+ needs Node 22 (undici 8), this machine has Node 20.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIMPLE_SALESFORCE_VERSION=1.12.10
JSFORCE_VERSION=3.10.16

peers="target/peers"
mkdir -p "$peers"
exec 9>"$peers/.lock"
flock 9

stamp="$peers/.installed-$SIMPLE_SALESFORCE_VERSION-$JSFORCE_VERSION"
if [ -f "$stamp" ]; then exit 0; fi

command -v python3 >/dev/null || { echo "python3 is needed for the simple-salesforce tests" >&2; exit 1; }
command -v npm >/dev/null || { echo "node and npm are needed for the jsforce tests" >&2; exit 1; }

echo "installing simple-salesforce $SIMPLE_SALESFORCE_VERSION into $peers/venv" >&2
rm -rf "$peers/venv"
python3 -m venv "$peers/venv"
"$peers/venv/bin/pip" install --quiet --disable-pip-version-check \
    "simple-salesforce==$SIMPLE_SALESFORCE_VERSION" >&2

echo "installing jsforce $JSFORCE_VERSION into $peers/node" >&2
rm -rf "$peers/node"
mkdir -p "$peers/node"
printf '{"name":"forcelink-peers","private":true}\n' > "$peers/node/package.json"
npm install --prefix "$peers/node" --silent --no-audit --no-fund "jsforce@$JSFORCE_VERSION" >&2

touch "$stamp"
