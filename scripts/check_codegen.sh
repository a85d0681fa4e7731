#!/usr/bin/env bash
# Fails if the checked-in generated code in kestrel/v1/ is not what scripts/gen_protos.sh makes
# from protos/ now. Regenerates into a temporary copy, so the working tree is never modified.
# Needs the `dev` extra (grpcio-tools, mypy-protobuf) in the active Python.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/scripts" "$tmp/kestrel"
cp scripts/gen_protos.sh "$tmp/scripts/"
cp -R protos "$tmp/protos"
# Start from the checked-in package so files the script does not generate (e.g. __init__.py) compare equal.
cp -R kestrel/. "$tmp/kestrel/"
find "$tmp" -name __pycache__ -type d -prune -exec rm -rf {} +

bash "$tmp/scripts/gen_protos.sh" >"$tmp/gen.log" 2>&1 || { cat "$tmp/gen.log" >&2; exit 1; }

if diff -ru --exclude=__pycache__ kestrel/v1 "$tmp/kestrel/v1"; then
  echo "check_codegen: kestrel/v1 is up to date with protos/"
else
  echo >&2
  echo "check_codegen: kestrel/v1 is stale: run scripts/gen_protos.sh and commit the result" >&2
  exit 1
fi
