import VSPCCore

/// The browser console's own page, script and style (project code; the terminal emulator is Debian's xterm.js,
/// served from `--web-assets`). No inline script: the page's Content-Security-Policy forbids it.
enum WebConsolePage {
    /// How the emulator is bundled into `dir` (Debian's node-xterm and esbuild).
    static func bundleCommand(_ dir: String) -> String {
        "esbuild /usr/share/nodejs/xterm/lib/public/Terminal.js --bundle --format=iife --global-name=Xterm --outfile=\(dir)/xterm.js && cp /usr/share/nodejs/xterm/lib/xterm.css \(dir)/"
    }

    static func html(mode: AccessMode, assets: String) -> String {
        let readOnly = mode == .readOnly
        return """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="no-referrer">
        <title>console - vspcd</title>
        <link rel="stylesheet" href="assets/xterm.css">
        <link rel="stylesheet" href="assets/page.css">
        </head>
        <body data-mode="\(mode.rawValue)">
        <header>
        <span class="brand">vspcd</span>
        <span id="mode" class="mode \(readOnly ? "read-only" : "read-write")">\(readOnly ? "read-only: what you type does not reach the VM" : "read-write")</span>
        </header>
        <div id="status" class="status" role="status" aria-live="polite">connecting</div>
        <div id="missing" class="missing" hidden>
        <p>The terminal emulator is not installed on the server. Install Debian's <code>node-xterm</code> and
        <code>esbuild</code> packages, then bundle it into vspcd's <code>--web-assets</code> folder:</p>
        <pre>\(escape(bundleCommand(assets)))</pre>
        </div>
        <main id="terminal" class="terminal" aria-label="VM console"></main>
        <script src="assets/xterm.js"></script>
        <script src="assets/page.js"></script>
        </body>
        </html>

        """
    }

    /// The page of a refused link.
    static func refusal(_ message: String) -> String {
        """
        <!doctype html>
        <html lang="en">
        <head><meta charset="utf-8"><title>console - vspcd</title><link rel="stylesheet" href="assets/page.css"></head>
        <body><header><span class="brand">vspcd</span></header>
        <div id="status" class="status refused" role="status">\(escape(message))</div>
        </body>
        </html>

        """
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// The page's glue: the terminal, its WebSocket (binary frames both ways; text frames are notices for the
    /// status line), nothing sent on a read-only page.
    static let script = #"""
    (function () {
      'use strict';
      var readOnly = document.body.getAttribute('data-mode') === 'read-only';
      var status = document.getElementById('status');
      function say(text) { status.textContent = text; }
      if (typeof Xterm === 'undefined' || !Xterm.Terminal) {
        document.getElementById('missing').hidden = false;
        say('the terminal emulator is not installed on the server');
        return;
      }
      var term = new Xterm.Terminal({
        screenReaderMode: true, cursorBlink: !readOnly, disableStdin: readOnly,
        scrollback: 5000, rows: 30, cols: 100
      });
      term.open(document.getElementById('terminal'));
      term.focus();
      var decoder = new TextDecoder('utf-8');
      var encoder = new TextEncoder();
      var path = location.pathname.replace(/\/+$/, '');
      var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path + '/ws';
      var socket = null;
      var opened = false;
      var tries = 0;
      function connect() {
        socket = new WebSocket(url);
        socket.binaryType = 'arraybuffer';
        socket.onopen = function () {
          opened = true;
          say(readOnly ? 'connected (read-only)' : 'connected');
        };
        socket.onmessage = function (event) {
          if (typeof event.data === 'string') { say(event.data); return; }
          term.write(decoder.decode(new Uint8Array(event.data), { stream: true }));
        };
        socket.onclose = function () {
          socket = null;
          if (!opened && tries < 3) {
            // A reload races the close of the page's previous WebSocket: try again shortly.
            tries += 1;
            setTimeout(connect, 1000);
            return;
          }
          say(opened ? 'disconnected: this session is over (reloading within a minute resumes it)'
                     : 'refused: this console link was already used or has expired');
          document.body.classList.add('closed');
        };
      }
      if (!readOnly) {
        term.on('data', function (data) {
          if (socket && socket.readyState === WebSocket.OPEN) { socket.send(encoder.encode(data)); }
        });
      }
      connect();
    })();

    """#

    static let style = """
    html, body { margin: 0; padding: 0; background: #1d1f21; color: #e0e0e0; font-family: sans-serif; }
    header { display: flex; gap: 1em; align-items: baseline; padding: 0.4em 0.8em; background: #2b2e31; }
    .brand { font-weight: bold; }
    .mode { font-size: 0.9em; padding: 0.1em 0.5em; border-radius: 0.3em; background: #35602f; }
    .mode.read-only { background: #7a4a12; }
    .status { padding: 0.3em 0.8em; font-size: 0.9em; background: #26292c; border-bottom: 1px solid #3a3d40; min-height: 1.2em; }
    .status.refused { color: #ffb4a8; }
    body.closed .status { color: #ffb4a8; }
    .missing { padding: 0.5em 0.8em; background: #5a1d1d; }
    .missing pre { white-space: pre-wrap; }
    .terminal { padding: 0.5em; }

    """
}
