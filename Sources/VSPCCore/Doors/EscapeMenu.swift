/// What a person can ask for after the escape byte (`Ctrl-]`) on an SSH session.
public enum EscapeCommand: Sendable, Hashable, CaseIterable {
    /// `.`: leave the session.
    case disconnect
    /// `?`: show the menu.
    case help
    /// `w`: list who is attached to this console, on every front door.
    case who
    /// `b`: send a telnet BREAK to the VM.
    case sendBreak
    /// `r`: replay the scrollback.
    case replay
    /// `f`: take exclusive write, or release it.
    case toggleExclusiveWrite

    /// The byte typed after `Ctrl-]` for this command.
    public var key: UInt8 {
        switch self {
        case .disconnect: UInt8(ascii: ".")
        case .help: UInt8(ascii: "?")
        case .who: UInt8(ascii: "w")
        case .sendBreak: UInt8(ascii: "b")
        case .replay: UInt8(ascii: "r")
        case .toggleExclusiveWrite: UInt8(ascii: "f")
        }
    }

    public init?(key: UInt8) {
        guard let command = Self.allCases.first(where: { $0.key == key }) else { return nil }
        self = command
    }
}

/// One result of feeding input to the escape menu, in input order.
public enum EscapeEvent: Sendable, Hashable {
    /// Bytes for the console, exactly as they should reach the VM.
    case forward([UInt8])
    /// A menu command.
    case command(EscapeCommand)
}

/// A streaming parser for what an SSH session types: it finds `Ctrl-]` (0x1D) menu commands and passes everything
/// else through unchanged.
///
/// * `Ctrl-]` then `.` `?` `w` `b` `r` `f`: the command (the two bytes are not forwarded).
/// * `Ctrl-]` twice: one `Ctrl-]` is forwarded.
/// * `Ctrl-]` then any other byte: the help (`.command(.help)`), as OpenSSH shows its menu for an unknown `~`
///   command; neither byte is forwarded (`Ctrl-]` `Ctrl-]` sends `Ctrl-]` itself).
///
/// The escape is recognised anywhere in the input, not only at the start of a line. The parser keeps one bit of
/// state (a `Ctrl-]` waiting for its next byte), so any split of the input into `feed` calls gives the same events;
/// adjacent forwarded bytes are merged into one `.forward`. A `Ctrl-]` still waiting when the session ends is dropped.
public struct EscapeMenu: Sendable {
    public static let escapeByte: UInt8 = 0x1D

    /// A `Ctrl-]` was the last byte fed and awaits the byte that says what it means.
    public private(set) var awaitingCommand = false

    public init() {}

    public mutating func feed<C: Collection>(_ bytes: C) -> [EscapeEvent] where C.Element == UInt8 {
        var events: [EscapeEvent] = []
        var run: [UInt8] = []
        func flush() {
            if !run.isEmpty {
                events.append(.forward(run))
                run.removeAll(keepingCapacity: true)
            }
        }
        for byte in bytes {
            if awaitingCommand {
                awaitingCommand = false
                if byte == Self.escapeByte {
                    run.append(byte)
                } else if let command = EscapeCommand(key: byte) {
                    flush()
                    events.append(.command(command))
                } else {
                    flush()
                    events.append(.command(.help))
                }
            } else if byte == Self.escapeByte {
                awaitingCommand = true
            } else {
                run.append(byte)
            }
        }
        flush()
        return events
    }

    /// The menu, as shown to a person by `Ctrl-]` `?` (CRLF line ends: the client's terminal is raw).
    public static let helpText = [
        "vspcd escape menu: Ctrl-] followed by",
        "  .       disconnect",
        "  ?       this help (any other key shows it too, and sends nothing)",
        "  w       who is attached to this console",
        "  b       send a BREAK to the VM",
        "  r       replay the scrollback",
        "  f       take or release exclusive write",
        "  Ctrl-]  send Ctrl-] itself",
    ].joined(separator: "\r\n") + "\r\n"
}
