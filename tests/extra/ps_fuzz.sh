#!/bin/sh
# ps_fuzz.sh - run each libFuzzer target (ASan+UBSan) for a bounded time:
# wire_fuzz (frames, before and after authentication), msg_fuzz (the real
# page server after authentication) and image_fuzz (haul restore's image
# loader), PS_FUZZ_TIME seconds each (default 15: ~45 s in all, plus the
# first build).  Exit 0: no crash; 77: skipped (no libFuzzer in this clang);
# else: a crash, with the reproducer in the build dir.
SRC=${HAUL_SRC:-$(pwd)}
BUILD=${HAUL_BUILD:-$SRC/build}
T=${PS_FUZZ_TIME:-15}
cd "$SRC" || exit 1
tmp=$(mktemp -d /tmp/ps-fuzz-probe-$$.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$tmp/p.c"
if ! command -v clang >/dev/null 2>&1 || ! clang -fsanitize=fuzzer "$tmp/p.c" -o "$tmp/p" >/dev/null 2>&1; then
	echo "clang with libFuzzer (-fsanitize=fuzzer) is not available here"
	exit 77
fi
targets="wire msg image"
for t in $targets; do
	make -s BUILD="$BUILD" "$BUILD/fuzz/${t}_fuzz" "$BUILD/fuzz/${t}_seeds" || exit 1
done
rm -rf "$BUILD/fuzz/artifacts"
mkdir -p "$BUILD/fuzz/artifacts"
for t in $targets; do
	corpus="$BUILD/fuzz/corpus-$t"
	mkdir -p "$corpus"
	"$BUILD/fuzz/${t}_seeds" "$corpus" || exit 1
	"$BUILD/fuzz/${t}_fuzz" -max_total_time="$T" -max_len=65536 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$BUILD/fuzz/artifacts/$t-" "$corpus" \
		>"$BUILD/fuzz/$t.log" 2>&1
	rc=$?
	grep -E '^stat::number_of_executed_units' "$BUILD/fuzz/$t.log" | sed "s/^/${t}_fuzz: /"
	# libFuzzer's verdict is in its exit status and its artifacts
	if [ $rc -ne 0 ] || ls "$BUILD/fuzz/artifacts/" | grep -q "^$t-"; then
		tail -30 "$BUILD/fuzz/$t.log"
		echo "${t}_fuzz found a crashing input: $(ls "$BUILD"/fuzz/artifacts/)"
		exit 1
	fi
	echo "${t}_fuzz: no crash in ${T}s"
done
exit 0
