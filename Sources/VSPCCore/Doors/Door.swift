/// A way people reach a console (telnet on its port, SSH, `vspc tail -f`, a browser), as a value with
/// its capabilities. The concentrator asks the door, never which door it is: a new door is one more value here
/// and one sink in the driver.
public struct Door: Hashable, Sendable, CustomStringConvertible {
    /// How console bytes are framed for the reader.
    public enum Framing: Sendable, Hashable {
        /// Telnet: 0xFF doubled (IAC IAC), so the bytes stay exact through the client's telnet decoding.
        case telnet
        /// Exactly the bytes the VM printed.
        case raw

        public func frame(_ bytes: [UInt8]) -> [UInt8] {
            switch self {
            case .telnet: return TelnetEncoder.escaped(bytes)
            case .raw: return bytes
            }
        }
    }

    /// What the person sends, and how it is read.
    public enum Input: Sendable, Hashable {
        /// Telnet: options answered, IAC sequences decoded (`ClientLinkStateMachine`).
        case telnet
        /// Raw bytes with the `Ctrl-]` escape menu (`EscapeMenu`).
        case escapeMenu
        /// Raw bytes, every one for the VM: no escape menu (the browser's page has its own controls).
        case raw
        /// Nothing: a reader only.
        case none
    }

    /// How a session on this door ends.
    public enum Ending: Sendable, Hashable {
        /// The connection is closed.
        case close
        /// The session ends with an exit status (its connection may carry others).
        case exitStatus
    }

    /// What happens to a reader that falls behind the console by more than its bound. The VM is never slowed.
    public enum WhenBehind: Sendable, Hashable {
        /// It is disconnected, with a recorded reason, so it knows it missed data (byte-exact doors).
        case disconnect
        /// The oldest unsent bytes are dropped for that reader alone, and a one-line marker says how many.
        case skipAhead
    }

    /// The `door=` of the audit, the `door` label of the metrics.
    public let name: String
    public let framing: Framing
    public let input: Input
    /// One-line notices (attach, detach, read-only, vMotion) are shown on it.
    public let notices: Bool
    public let ending: Ending
    /// Descriptors a person on this door costs the process (an SSH session shares its connection's; a `tail -f`
    /// follower is counted as the admin connection it arrived on).
    public let descriptors: Int
    public let whenBehind: WhenBehind
    /// The last `--replay` bytes of scrollback are sent when a person attaches.
    public let replayOnAttach: Bool
    /// Notices travel apart from the console's bytes (the browser shows them on a status line outside the
    /// terminal): the machine emits them as `.notice` actions instead of bytes in the stream.
    public var noticesApart = false
    /// The attach replays the whole scrollback, not only the last `--replay` bytes (the browser's terminal keeps
    /// its own scrollback).
    public var replaysScrollback = false

    public var description: String { name }

    public static let telnet = Door(name: "telnet", framing: .telnet, input: .telnet, notices: false,
                                    ending: .close, descriptors: 1, whenBehind: .disconnect, replayOnAttach: true)
    public static let ssh = Door(name: "ssh", framing: .raw, input: .escapeMenu, notices: true,
                                 ending: .exitStatus, descriptors: 0, whenBehind: .skipAhead, replayOnAttach: false)
    public static let tail = Door(name: "tail", framing: .raw, input: .none, notices: false,
                                  ending: .close, descriptors: 0, whenBehind: .disconnect, replayOnAttach: false)

    public static let web = Door(name: "web", framing: .raw, input: .raw, notices: true, ending: .close,
                                 descriptors: 1, whenBehind: .disconnect, replayOnAttach: true, noticesApart: true,
                                 replaysScrollback: true)
    /// Another node of the cluster, feeding its own people from a console this node owns: the exact bytes, its
    /// people's input for the VM, no notices (the other node shows its own). Behind: disconnected, and the other
    /// node opens the feed again.
    public static let node = Door(name: "node", framing: .raw, input: .raw, notices: false, ending: .close,
                                  descriptors: 1, whenBehind: .disconnect, replayOnAttach: false)

    /// The default bound of a reader's backlog, on either kind of door (`--disconnect-backlog`, `--skip-backlog`).
    public static let defaultBacklog = 1 << 20

    /// Every door, in the order status and metrics list them.
    public static let all: [Door] = [.telnet, .ssh, .tail, .web]

    public static func named(_ name: String) -> Door? { all.first { $0.name == name } }

    /// Console bytes as this door's reader gets them.
    public func frame(_ bytes: [UInt8]) -> [UInt8] { framing.frame(bytes) }

    /// What is sent first, before any console byte.
    public var opening: [UInt8] { input == .telnet ? ClientLinkStateMachine.opening : [] }

    /// A one-line notice as the reader sees it; nil on doors that carry console bytes only.
    public func notice(_ text: String) -> [UInt8]? {
        notices && !noticesApart ? Array("\r\n[vspcd: \(text)]\r\n".utf8) : nil
    }

    /// The line put where a reader that fell behind skipped `count` bytes.
    public static func skippedMarker(_ count: Int) -> [UInt8] {
        Array("\r\n[vspcd: \(ByteCount.text(count)) skipped, you fell behind]\r\n".utf8)
    }
}

/// Byte counts as people read them: `512 bytes`, `12.3 KB`, `1.2 MB` (powers of 1000, one decimal).
public enum ByteCount {
    public static func text(_ count: Int) -> String {
        let units = ["KB", "MB", "GB", "TB"]
        guard count >= 1000 else { return count == 1 ? "1 byte" : "\(count) bytes" }
        var value = Double(count) / 1000
        var unit = 0
        while value >= 999.95, unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }
}
