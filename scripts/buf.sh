#!/usr/bin/env bash
# Runs buf (from the npm package @bufbuild/buf, pinned below) on the protos; installs it on first
# use into a per-user cache, outside the repository.
#   scripts/buf.sh lint                      # buf lint (rules in buf.yaml)
#   scripts/buf.sh breaking [REF]            # buf breaking against a git ref (default: main)
#   scripts/buf.sh <any buf arguments>       # passed through
# Environment: KESTREL_BUF_DIR overrides the install directory.
set -euo pipefail
cd "$(dirname "$0")/.."

version=1.75.0
prefix="${KESTREL_BUF_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kestrel/buf-$version}"
buf="$prefix/node_modules/.bin/buf"

if [ ! -x "$buf" ] || [ "$("$buf" --version 2>/dev/null)" != "$version" ]; then
  command -v npm >/dev/null || { echo "buf.sh: npm is needed to install @bufbuild/buf" >&2; exit 1; }
  echo "buf.sh: installing @bufbuild/buf@$version into $prefix" >&2
  mkdir -p "$prefix"
  npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$prefix" "@bufbuild/buf@$version" >&2
  "$buf" --version >/dev/null
fi

case "${1:-lint}" in
  lint)
    shift || true
    exec "$buf" lint "$@"
    ;;
  breaking)
    shift || true
    ref="${1:-main}"
    exec "$buf" breaking --against ".git#ref=$ref"
    ;;
  *)
    exec "$buf" "$@"
    ;;
esac
