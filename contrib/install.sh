#!/usr/bin/env bash
# Installs vspcd as a systemd service: release build, binaries, a system user, the unit, the sample config,
# the man pages and the shell completions, then enables and starts the service.
#
#   contrib/install.sh                       build, install under /usr/local and /etc, start vspcd
#   contrib/install.sh --destdir /tmp/root   install the files under /tmp/root only: no user, no systemctl
#   contrib/install.sh --bin-dir DIR         install vspcd and vspc from DIR instead of building them
set -euo pipefail

usage() {
    sed -n '2,8s/^# \{0,1\}//p' "$0"
    exit "${1:-0}"
}

destdir=""
prefix=/usr/local
bin_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
        --bin-dir=*) bin_dir=${1#*=}; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; usage 2 >&2 ;;
    esac
done
if [ -n "$destdir" ]; then
    mkdir -p "$destdir"
    destdir=$(cd "$destdir" && pwd)
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$bin_dir" ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
    (cd "$repo" && swift build -c release --product vspcd && swift build -c release --product vspc)
    bin_dir=$(cd "$repo" && swift build -c release --show-bin-path)
fi
for tool in vspcd vspc; do
    [ -x "$bin_dir/$tool" ] || { echo "install.sh: $bin_dir/$tool is missing" >&2; exit 1; }
done

run() { echo "+ $*"; "$@"; }

# Binaries, man pages, completions.
run install -d -m 0755 "$destdir$prefix/bin" "$destdir$prefix/share/man/man1" \
    "$destdir$prefix/share/bash-completion/completions" "$destdir$prefix/share/zsh/site-functions" \
    "$destdir$prefix/share/fish/vendor_completions.d"
run install -m 0755 "$bin_dir/vspcd" "$bin_dir/vspc" "$destdir$prefix/bin/"
run install -m 0644 "$repo/contrib/man/vspcd.1" "$repo/contrib/man/vspc.1" "$destdir$prefix/share/man/man1/"
for tool in vspcd vspc; do
    run install -m 0644 "$repo/contrib/completions/$tool.bash" "$destdir$prefix/share/bash-completion/completions/$tool"
    run install -m 0644 "$repo/contrib/completions/_$tool" "$destdir$prefix/share/zsh/site-functions/_$tool"
    run install -m 0644 "$repo/contrib/completions/$tool.fish" "$destdir$prefix/share/fish/vendor_completions.d/$tool.fish"
done

# The browser console's terminal emulator (vspcd --web-assets, default $prefix/share/vspcd/web): Debian's
# xterm.js 3.8.1 (node-xterm, CommonJS modules) bundled into one browser file by Debian's esbuild.
web="$destdir$prefix/share/vspcd/web"
if [ -e /usr/share/nodejs/xterm/lib/public/Terminal.js ] && command -v esbuild >/dev/null 2>&1; then
    run install -d -m 0755 "$web"
    run esbuild /usr/share/nodejs/xterm/lib/public/Terminal.js --bundle --format=iife --global-name=Xterm \
        --log-level=warning --outfile="$web/xterm.js"
    chmod 0644 "$web/xterm.js"
    run install -m 0644 /usr/share/nodejs/xterm/lib/xterm.css "$web/xterm.css"
else
    echo "install.sh: the browser console (vspc url) needs Debian's node-xterm and esbuild: apt-get install node-xterm esbuild, then run install.sh again"
fi

# The unit, and the config (an existing one is kept).
run install -d -m 0755 "$destdir/etc/systemd/system" "$destdir/etc/vspcd"
run install -m 0644 "$repo/contrib/systemd/vspcd.service" "$destdir/etc/systemd/system/vspcd.service"
if [ -e "$destdir/etc/vspcd/vspcd.toml" ]; then
    echo "kept the existing $destdir/etc/vspcd/vspcd.toml"
else
    run install -m 0644 "$repo/contrib/vspcd.toml" "$destdir/etc/vspcd/vspcd.toml"
fi

if [ -n "$destdir" ]; then
    echo "installed under $destdir; on the target host also run:"
    echo "  useradd --system --user-group --home-dir /var/lib/vspcd --no-create-home --shell /usr/sbin/nologin vspcd"
    echo "  systemctl daemon-reload && systemctl enable --now vspcd"
    exit 0
fi

# The service's user; systemd creates /var/lib/vspcd (StateDirectory) owned by it.
if ! id -u vspcd >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir /var/lib/vspcd --no-create-home --shell /usr/sbin/nologin vspcd
fi
run systemctl daemon-reload
run systemctl enable --now vspcd
run systemctl --no-pager status vspcd
