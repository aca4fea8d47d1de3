#!/bin/sh
# ps_fuzz.sh - run the libFuzzer target of the wire frame decoder for a bounded
# time (PS_FUZZ_TIME seconds, default 30).  Exit 0: no crash; 77: skipped
# (no libFuzzer in this clang); else: a crash, with the reproducer in the build dir.
SRC=${HAUL_SRC:-$(pwd)}
BUILD=${HAUL_BUILD:-$SRC/build}
T=${PS_FUZZ_TIME:-30}
cd "$SRC" || exit 1
tmp=$(mktemp -d /tmp/ps-fuzz-probe-$$.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$tmp/p.c"
if ! command -v clang >/dev/null 2>&1 || ! clang -fsanitize=fuzzer "$tmp/p.c" -o "$tmp/p" >/dev/null 2>&1; then
	echo "clang with libFuzzer (-fsanitize=fuzzer) is not available here"
	exit 77
fi
make -s BUILD="$BUILD" "$BUILD/fuzz/wire_fuzz" "$BUILD/fuzz/wire_seeds" || exit 1
rm -rf "$BUILD/fuzz/artifacts"
mkdir -p "$BUILD/fuzz/corpus" "$BUILD/fuzz/artifacts"
"$BUILD/fuzz/wire_seeds" "$BUILD/fuzz/corpus" || exit 1
"$BUILD/fuzz/wire_fuzz" -max_total_time="$T" -rss_limit_mb=1024 -print_final_stats=1 \
	-artifact_prefix="$BUILD/fuzz/artifacts/" "$BUILD/fuzz/corpus" 2>&1 | tail -5
rc=$?
# the pipeline's status is tail's; libFuzzer's verdict is in the artifacts
if ls "$BUILD/fuzz/artifacts/" | grep -q .; then
	echo "wire_fuzz found a crashing input: $(ls "$BUILD"/fuzz/artifacts/)"
	exit 1
fi
[ $rc -eq 0 ] || exit 1
echo "wire_fuzz: no crash in ${T}s"
exit 0
