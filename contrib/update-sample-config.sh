#!/usr/bin/env bash
# Writes the code's defaults into the sample config (contrib/vspcd.toml): each commented line `# KEY = VALUE`
# whose key has a default gets the value `vspcd --print-defaults` prints, from DaemonSettings, the one list of
# defaults. The prose and the example values of settings with no default (ssl-cert, metrics, ...) are kept.
# VSPCD names the binary (default: the debug build, built if missing). ConfigFileTests checks the result.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
vspcd=${VSPCD:-.build/debug/vspcd}
[ -x "$vspcd" ] || swift build --product vspcd
defaults=$(mktemp)
trap 'rm -f "$defaults"' EXIT
"$vspcd" --print-defaults > "$defaults"
awk -v defaults="$defaults" '
    BEGIN { while ((getline line < defaults) > 0) { k = line; sub(/ = .*/, "", k); v = line; sub(/^[^=]* = /, "", v); d[k] = v } }
    /^# [a-z-]+ = / { k = $2; if (k in d) { print "# " k " = " d[k]; next } }
    { print }
' contrib/vspcd.toml > contrib/vspcd.toml.new
mv contrib/vspcd.toml.new contrib/vspcd.toml
echo "contrib/vspcd.toml: defaults written from vspcd --print-defaults"
