#!/usr/bin/env bash
# Regenerates the man pages (contrib/man/*.1) and shell completions (contrib/completions/) of vspcd and vspc
# with swift-argument-parser's own tools: the GenerateManual plugin (`swift package plugin generate-manual`,
# which builds the package in release mode) and each tool's `--generate-completion-script`.
# Run it after changing a flag or a help text, and commit what it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

# The manual's date is the last commit's, so that regenerating unchanged help changes nothing.
date=$(git log -1 --format=%cs 2>/dev/null || date +%F)

# A build folder of its own (SCRATCH, default .build-docs), so a debug build beside it is not blocked.
scratch=${SCRATCH:-.build-docs}
swift package --scratch-path "$scratch" plugin generate-manual --date "$date"
swift build -c release --scratch-path "$scratch" --product vspcd
swift build -c release --scratch-path "$scratch" --product vspc
bin=$(swift build -c release --scratch-path "$scratch" --show-bin-path)
workdir=$scratch/plugins/GenerateManual/outputs

mkdir -p contrib/man contrib/completions
for tool in vspcd vspc; do
    page=$(find "$workdir/$tool" -name "$tool.1" -print -quit)
    [ -n "$page" ] || { echo "generate-docs: no manual for $tool under $workdir" >&2; exit 1; }
    if [ "$tool" = vspcd ]; then
        # vspcd has no subcommands, but the manual generator lists argument-parser's implicit `help` one: drop
        # it, and the `subcommand` it puts in the synopsis.
        awk '/^\.Ar subcommand$/ { next }
             /^\.It Em help$/ { skip = 1; next }
             skip { if ($0 == ".El") skip = 0; next }
             { print }' "$page" > "contrib/man/$tool.1"
        chmod 0644 "contrib/man/$tool.1"
    else
        install -m 0644 "$page" "contrib/man/$tool.1"
    fi
    "$bin/$tool" --generate-completion-script bash > "contrib/completions/$tool.bash"
    "$bin/$tool" --generate-completion-script zsh > "contrib/completions/_$tool"
    "$bin/$tool" --generate-completion-script fish > "contrib/completions/$tool.fish"
done
ls -l contrib/man contrib/completions
