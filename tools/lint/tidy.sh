#!/usr/bin/env bash
# Runs clang-tidy with the project's .clang-tidy (every bugprone check but the two it explains) on
# every source file under src/, or on the files given, and exits 1 on any finding. It needs a
# configured build folder for the compile commands, one file per entry (default build, the release
# preset; not the sanitizer presets, whose library is a unity build). About 6 min for all of src/
# on 2 cores: the checks walk every header each file includes.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build
if [ "${1:-}" = "-p" ]; then build=$2; shift 2; fi
TIDY=${CLANG_TIDY:-$(command -v clang-tidy-14 || command -v clang-tidy || true)}
[ -n "$TIDY" ] || { echo "tidy.sh: clang-tidy is not installed (scripts/setup installs it)" >&2; exit 1; }
[ -f "$build/compile_commands.json" ] || {
  echo "tidy.sh: $build/compile_commands.json is missing (configure it: cmake --preset release)" >&2
  exit 1
}
if [ $# -gt 0 ]; then files=("$@"); else mapfile -t files < <(git ls-files 'src/*.cpp'); fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# One clang-tidy per file, as many at once as there are cores; only findings are shown. The compile
# commands are GCC's: clang does not know some of its warning options (kept quiet, not an error).
printf '%s\n' "${files[@]}" | xargs -P "$(nproc)" -I{} sh -c \
  '"$0" -p "$1" --quiet --extra-arg=-Wno-unknown-warning-option "$2" > "$3.$$" 2>&1 || { cat "$3.$$" >> "$3"; echo "tidy.sh: $2" >> "$3"; }; rm -f "$3.$$"' \
  "$TIDY" "$build" {} "$log" || true
if [ -s "$log" ]; then
  grep -v "warnings generated\|^Suppressed\|^Use -header-filter" "$log" >&2
  echo "tidy.sh: clang-tidy found problems in the files listed above" >&2
  exit 1
fi
echo "tidy.sh: ${#files[@]} files clean"
