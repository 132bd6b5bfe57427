/// Strips terminal control sequences from console output (for `vspc tail --safe`): ESC sequences (CSI, OSC,
/// DCS and two-byte escapes), C0 control bytes other than TAB, LF and CR, DEL, and the C1 controls
/// U+0080-U+009F in their UTF-8 form (C2 80-C2 9F; a terminal may read C2 9B as CSI). Other UTF-8 text passes
/// through unchanged. Streaming: a sequence split across chunks is still removed.
public struct TerminalSanitizer: Sendable {
    enum State: Sendable { case text, escape, csi, string, stringEscape, afterC2 }
    var state: State = .text

    public init() {}

    public mutating func filter<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for byte in bytes {
            switch state {
            case .text:
                text(byte, into: &out)
            case .afterC2:
                state = .text
                if byte >= 0x80 && byte <= 0x9F { continue } // a C1 control: drop both bytes
                out.append(0xC2)
                text(byte, into: &out)
            case .escape:
                switch byte {
                case UInt8(ascii: "["): state = .csi
                case UInt8(ascii: "]"), UInt8(ascii: "P"), UInt8(ascii: "X"), UInt8(ascii: "^"), UInt8(ascii: "_"):
                    state = .string
                case 0x20...0x2F: state = .escape // intermediate bytes, e.g. ESC ( B
                default: state = .text
                }
            case .csi:
                if byte >= 0x40 && byte <= 0x7E { state = .text }
            case .string:
                if byte == 0x07 { state = .text } else if byte == 0x1B { state = .stringEscape }
            case .stringEscape:
                state = byte == UInt8(ascii: "\\") ? .text : .string
            }
        }
        return out
    }

    private mutating func text(_ byte: UInt8, into out: inout [UInt8]) {
        switch byte {
        case 0x1B: state = .escape
        case 0xC2: state = .afterC2
        case 0x09, 0x0A, 0x0D: out.append(byte)
        case 0x20...0x7E, 0x80...0xFF: out.append(byte)
        default: break // other C0 controls and DEL
        }
    }
}
