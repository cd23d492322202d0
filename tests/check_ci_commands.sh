#!/usr/bin/env bash
# .ci/run must run exactly commands the README documents: every command line of .ci/run (not
# set/cd/export/comments) must be the start of a line inside a ```sh block of README.md.
# Usage: check_ci_commands.sh SOURCE_DIR
set -euo pipefail
src=$1
documented=$(awk '/^```sh/ { inside = 1; next } /^```/ { inside = 0 } inside { sub(/[ \t]+#.*$/, ""); print }' "$src/README.md")
status=0
while IFS= read -r cmd; do
  if ! grep -qxF -- "$cmd" <<<"$documented"; then
    echo "check_ci_commands: .ci/run runs '$cmd', which no \`\`\`sh block of README.md shows" >&2
    status=1
  fi
done < <(grep -vE '^[[:space:]]*(#|$|set |cd |export )' "$src/.ci/run")
[ "$status" -ne 0 ] || echo "check_ci_commands: every command of .ci/run is in README.md"
exit "$status"
