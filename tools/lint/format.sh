#!/usr/bin/env bash
# Checks that every C++ file of the project is formatted as .clang-format says (a list of the
# files that are not, and exit 1); with --fix, formats them in place.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLANG_FORMAT=${CLANG_FORMAT:-$(command -v clang-format-14 || command -v clang-format || true)}
[ -n "$CLANG_FORMAT" ] || { echo "format.sh: clang-format is not installed (scripts/setup installs it)" >&2; exit 1; }
mapfile -t files < <(git ls-files 'src/*.cpp' 'src/*.h' 'tests/*.cpp' 'tests/*.h' 'bench/*.cpp' 'fuzz/*.cpp')
if [ "${1:-}" = "--fix" ]; then
  "$CLANG_FORMAT" -i "${files[@]}"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  if ! "$CLANG_FORMAT" --dry-run --Werror "$f" >/dev/null 2>&1; then echo "not formatted: $f"; bad=1; fi
done
[ $bad -eq 0 ] || echo "format.sh: run tools/lint/format.sh --fix" >&2
exit $bad
