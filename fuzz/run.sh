#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ against the pure core and runs each for SECONDS (default 60).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      TARGET: telnet-vmlink, admin-request (default: all)
#
# Each target is compiled with swiftc -sanitize=fuzzer,address (FUZZ_SANITIZE overrides) together with the
# core sources below into .build-fuzz/fuzz-TARGET, and run with its corpus in .build-fuzz/corpus-TARGET (kept
# between runs). The telnet corpus is seeded from the ESXi captures in the test fixtures. Prints executions and
# corpus size per target; exits non-zero if a target crashed (the input is in .build-fuzz/crashes-TARGET/:
# make it a regression test) or failed to build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# The pure sources the targets are compiled with, as one module: the core target, which depends on nothing.
CORE_SOURCES=(Sources/VSPCCore)
# Where the telnet corpus is seeded from: text files of hex bytes, `#` lines are comments.
SEED_HEX=(Tests/VSPCCoreTests/Fixtures/*.hex)

SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(telnet-vmlink admin-request)
SANITIZE=${FUZZ_SANITIZE:-fuzzer,address}
OUT=.build-fuzz
export PATH="/opt/swift/usr/bin:$PATH"

source_file() {
    case "$1" in
        telnet-vmlink) echo fuzz/FuzzTelnetVMLink.swift ;;
        admin-request) echo fuzz/FuzzAdminRequest.swift ;;
        *) echo "fuzz/run.sh: unknown target $1" >&2; return 1 ;;
    esac
}

# The core sources, copied as one module: imports of the package's own modules are dropped.
rm -rf "$OUT/src"
mkdir -p "$OUT/src"
for entry in "${CORE_SOURCES[@]}"; do
    if [ -d "$entry" ]; then find "$entry" -name '*.swift'; elif [ -f "$entry" ]; then echo "$entry"; fi
done | sort -u | while read -r file; do
    mkdir -p "$OUT/src/$(dirname "$file")"
    sed -E '/^(@_exported )?import VSPC[A-Za-z]*$/d' "$file" > "$OUT/src/$file"
done
mapfile -t core < <(find "$OUT/src" -name '*.swift' | sort)

seed_telnet() {
    local corpus=$1 file name
    for file in "${SEED_HEX[@]}"; do
        [ -f "$file" ] || continue
        name=$(basename "$file" .hex)
        # A 4-byte split seed (zero: reads of one byte, no timeouts), then the capture's bytes.
        { printf '\0\0\0\0'; perl -ne 'next if /^#/; s/\s+//g; print pack("H*", $_)' "$file"; } > "$corpus/seed-$name"
        { printf '\377\0\0\3'; perl -ne 'next if /^#/; s/\s+//g; print pack("H*", $_)' "$file"; } > "$corpus/seed-$name-split"
    done
}

seed_admin() {
    local corpus=$1 i=0 line
    for line in '{"version":1,"command":"list"}' '{"version":1,"command":"status"}' \
        '{"version":1,"command":"tail","vm":"web-0","label":"com2","bytes":4096,"follow":true}' \
        '{"version":1,"command":"forget","vm":"514d0000-0000-0000-0000-000000000000"}' \
        '{"version":2,"command":"list"}' '{"version":1,"command":"tail","vm":"\u001b]52;c;x\u0007","label":""}'; do
        printf '%s' "$line" > "$corpus/seed-$i"
        i=$((i + 1))
    done
    # A vm one byte over the bound.
    printf '{"version":1,"command":"tail","vm":"%s"}' "$(head -c 1025 /dev/zero | tr '\0' v)" > "$corpus/seed-long-vm"
}

status=0
summary=()
for target in "${TARGETS[@]}"; do
    src=$(source_file "$target")
    bin="$OUT/fuzz-$target"
    corpus="$OUT/corpus-$target"
    crashes="$OUT/crashes-$target"
    mkdir -p "$corpus" "$crashes"
    echo "== $target: building ($SANITIZE)"
    # From inside $OUT: swiftc leaves the module's .swiftmodule/.swiftdoc files in its working directory.
    if ! (cd "$OUT" && nice -n 15 swiftc -sanitize="$SANITIZE" -parse-as-library -O -wmo -g -module-name "Fuzz" \
            "${core[@]/#/$root/}" "$root/$src" -o "$root/$bin") > "$OUT/build-$target.log" 2>&1; then
        grep -v 'Cannot export local symbol' "$OUT/build-$target.log" >&2 || true
        echo "== $target: build failed" >&2
        status=1
        summary+=("$target: build failed")
        continue
    fi
    case "$target" in
        telnet-vmlink) seed_telnet "$corpus"; max_len=4096; dict=(-dict=fuzz/telnet-vmlink.dict) ;;
        admin-request) seed_admin "$corpus"; max_len=8192; dict=(-dict=fuzz/admin-request.dict) ;;
    esac
    echo "== $target: fuzzing for ${SECONDS_PER_TARGET}s"
    set +e
    # The Swift runtime's backtracer would take the crash signal before libFuzzer could save the input.
    SWIFT_BACKTRACE=enable=no nice -n 15 "$bin" "$corpus" -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" ${dict[@]+"${dict[@]}"} -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$crashes/" > "$OUT/run-$target.log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/run-$target.log" | tail -1)
    size=$(find "$corpus" -type f | wc -l)
    kept=$(sed -n 's/.*DONE .* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' "$OUT/run-$target.log" | tail -1)
    line="$target: ${execs:-?} executions in ${SECONDS_PER_TARGET}s, corpus $size files (${kept:-?} kept by libFuzzer)"
    if [ $rc -ne 0 ]; then
        grep -E 'ERROR|Fatal error|Precondition failed|SUMMARY|Test unit written|Base64' "$OUT/run-$target.log" | head -20 >&2 || true
        line="$line, CRASHED (exit $rc; log $OUT/run-$target.log; input in $crashes/)"
        status=1
    fi
    echo "== $line"
    summary+=("$line")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
