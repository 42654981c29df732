#!/usr/bin/env bash
# Build ./pgraft, one executable with the SQL migrations embedded (text imports).
# deno compile downloads a `denort` runtime; where that download is impossible,
# point DENORT_BIN at a denort binary of the same Deno version.
set -euo pipefail
cd "$(dirname "$0")"
# Exactly what the agent needs: its config files and secrets (read), the dev
# cluster directory (write), the network (peers, PostgreSQL, its HTTP port),
# the PG* variables, and running PostgreSQL's own programs for `pgraft dev`.
args=(compile --output pgraft
  --allow-read --allow-write --allow-net --allow-env --allow-run --allow-sys=uid,hostname,osRelease
  --v8-flags=--max-semi-space-size=1
  --include sql/
  main.ts)
if ! deno "${args[@]}"; then
  cat >&2 <<'MSG'
compile.sh: deno compile failed. If the error above is about downloading `denort`,
this machine cannot reach Deno's release server: download denort for this Deno
version on a connected machine and run again with DENORT_BIN=/path/to/denort.
MSG
  exit 1
fi
echo "built ./pgraft ($(du -h pgraft | cut -f1))"
