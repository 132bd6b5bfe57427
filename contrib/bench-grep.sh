#!/bin/sh
# Times `vspc grep` over ~500 MB of console logs in the on-disk format (live + rotated files and their time
# indexes), for a regex, a fixed string and -i, and prints MB/s. Run from the repository:
#   contrib/bench-grep.sh [MB]
# Needs python3 (to write the logs) and a Swift toolchain. The logs go to a temporary folder, removed at the end.
set -eu

MB=${1:-500}
cd "$(dirname "$0")/.."
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vspc-bench-grep.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

echo "building vspc (release)..." >&2
swift build -c release --scratch-path .build-release --product vspc >&2
VSPC=.build-release/release/vspc

echo "writing ${MB} MB of console logs to $WORK/consoles..." >&2
python3 - "$WORK/consoles" "$MB" <<'PY'
import os, random, struct, sys
folder, total = sys.argv[1], int(sys.argv[2]) * 1000 * 1000
os.makedirs(folder)
rnd = random.Random(16)
devices = ["sda", "sdb", "nvme0n1", "eth0", "ens192", "usb 1-1", "vmxnet3 0000:0b:00.0", "EXT4-fs (sda1)", "xfs (dm-0)"]
words = ["link is up", "link is down", "reset", "mounted filesystem with ordered data mode", "new high-speed USB device",
         "renamed from eth0", "Attached SCSI disk", "Write cache: enabled", "TSC deadline timer enabled",
         "audit: type=1400 apparmor=\"STATUS\" operation=\"profile_load\"", "Started Session of user root.",
         "systemd[1]: Reached target Multi-User System.", "clocksource: Switched to clocksource tsc"]
pool = []
for i in range(20000):
    t = i * 0.137
    pool.append("[%12.6f] %s: %s (%d)\r\n" % (t, rnd.choice(devices), rnd.choice(words), rnd.randrange(1 << 20)))
hits = ["[ 4242.000001] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n",
        "[ 4242.000002] bash[1234]: segfault at 7f3a2c ip 00007f3a sp 00007ffd error 4\r\n"]
consoles = ["%032x" % rnd.getrandbits(128) for _ in range(max(8, total // (6 * 10 * 1024 * 1024) + 1))]
per_file = 10 * 1024 * 1024
line_length = sum(len(line) for line in pool) / len(pool)
files = max(1, round(total / per_file))
written, ms, n = 0, 1764684000000, 0
for uuid in consoles:
    for name in [uuid + ".5", uuid + ".4", uuid + ".3", uuid + ".2", uuid + ".1", uuid]:
        if n >= files:
            break
        lines = rnd.choices(pool, k=int(per_file / line_length))
        for _ in range(3):
            lines[rnd.randrange(len(lines))] = rnd.choice(hits)
        index = bytearray(b"vspcidx1" + bytes(8))
        data = bytearray()
        for start in range(0, len(lines), 200):
            index += struct.pack("<Qq", len(data), ms)
            ms += 1000 + rnd.randrange(60000)
            data += "".join(lines[start:start + 200]).encode()
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        with open(os.path.join(folder, name + ".idx"), "wb") as f:
            f.write(index)
        written += len(data)
        n += 1
print("%d files, %.0f MB" % (n, written / 1e6), file=sys.stderr)
PY

BYTES=$(find "$WORK/consoles" -type f ! -name '*.idx' -exec cat {} + | wc -c)
# Page cache warm: the figures are the search, not the disk.
cat "$WORK"/consoles/* > /dev/null

run() {
    label=$1; shift
    best=""
    for _ in 1 2 3; do
        start=$(date +%s.%N)
        count=$("$VSPC" grep --db "$WORK/none.db" --console-log-dir "$WORK/consoles" "$@" | wc -l)
        end=$(date +%s.%N)
        t=$(echo "$end - $start" | bc -l)
        if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
    done
    printf '%-40s %6d lines  %6.2f s  %7.0f MB/s\n' "$label" "$count" "$best" "$(echo "$BYTES / 1000000 / $best" | bc -l)"
}

printf 'vspc grep over %.0f MB of console logs (best of 3):\n' "$(echo "$BYTES / 1000000" | bc -l)"
run "regex 'segfault at [0-9a-f]+'" 'segfault at [0-9a-f]+'
run "fixed -F 'Kernel panic'" -F 'Kernel panic'
run "ignore case -i 'kernel panic'" -i 'kernel panic'
run "fixed, ignore case -F -i 'KERNEL PANIC'" -F -i 'KERNEL PANIC'
