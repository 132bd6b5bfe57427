/// Strips terminal control sequences from console output (for `vspc tail --safe`): ESC sequences (CSI, OSC,
/// DCS and two-byte escapes) and C0 control bytes other than TAB, LF and CR, plus DEL. UTF-8 text passes
/// through unchanged. Streaming: a sequence split across chunks is still removed.
public struct TerminalSanitizer: Sendable {
    enum State: Sendable { case text, escape, csi, string, stringEscape }
    var state: State = .text

    public init() {}

    public mutating func filter<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for byte in bytes {
            switch state {
            case .text:
                if byte == 0x1B {
                    state = .escape
                } else if byte == 0x09 || byte == 0x0A || byte == 0x0D || (byte >= 0x20 && byte != 0x7F) {
                    out.append(byte)
                }
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
}
