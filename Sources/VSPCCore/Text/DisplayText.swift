/// Text that came from outside (VM names, labels, peers, event details, a daemon's error messages) made safe
/// to print on a terminal: every character that a terminal would act on rather than show is written as a
/// visible escape, so a name is read as data and never as a terminal command.
///
/// Escaped, and only these:
/// - C0 controls U+0000-U+001F and DEL U+007F as `\x1b`, `\x7f` (two lowercase hex digits);
/// - C1 controls U+0080-U+009F (CSI, OSC, NEL, ... in 8-bit form) as `\u{9b}`;
/// - the bidi embedding, override and isolate controls U+202A-U+202E and U+2066-U+2069 as `\u{202e}`;
/// - the backslash itself as `\\`, so that an escape in the output always stands for what it spells;
/// - with `escape(utf8:)`, each byte that is not part of valid UTF-8 (lone surrogates, overlong forms,
///   truncated sequences) as `\xff`: `\x` with a value of 80 or more only ever means a raw invalid byte.
/// Everything else, non-ASCII letters included, passes through unchanged. The escaped text is ASCII
/// wherever the input was, so column widths computed from it stay right.
public enum DisplayText {
    /// True for the scalars `escape` writes as escapes (the backslash excepted).
    public static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }

    /// `text` with its unsafe characters and backslashes escaped.
    public static func escape(_ text: String) -> String {
        // The common case, nothing to escape, returns the string itself.
        guard text.unicodeScalars.contains(where: { $0 == "\\" || isUnsafe($0) }) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars { append(scalar, to: &out) }
        return String(out)
    }

    /// `escape` for an optional: nil stays nil.
    public static func escape(_ text: String?) -> String? {
        text.map { escape($0) }
    }

    /// UTF-8 bytes as display text: valid sequences as by `escape(_:)`, every byte of an invalid sequence as `\xHH`.
    public static func escape<C: Collection>(utf8 bytes: C) -> String where C.Element == UInt8 {
        var out = String.UnicodeScalarView()
        var remaining = Array(bytes)[...]
        while !remaining.isEmpty {
            // A fresh parser each time: it reads ahead, and the bytes of an invalid sequence are needed whole.
            var parser = Unicode.UTF8.ForwardParser()
            var iterator = remaining.makeIterator()
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                append(Unicode.UTF8.decode(encoded), to: &out)
                remaining = remaining.dropFirst(encoded.count)
            case .error(let length):
                let bad = max(1, length)
                for byte in remaining.prefix(bad) { appendHex(byte, to: &out) }
                remaining = remaining.dropFirst(bad)
            case .emptyInput:
                remaining = remaining.dropFirst(remaining.count)
            }
        }
        return String(out)
    }

    /// JSON text with DEL, the C1 controls and the bidi controls written as `\u` escapes: the same JSON value
    /// (a decoder reads back the exact strings), but nothing a terminal acts on. C0 controls need no work: a
    /// JSON encoder escapes them inside strings, and outside strings only whitespace can occur.
    public static func terminalSafeJSON(_ json: String) -> String {
        guard json.unicodeScalars.contains(where: { $0.value >= 0x7F && isUnsafe($0) }) else { return json }
        var out = String.UnicodeScalarView()
        for scalar in json.unicodeScalars {
            if scalar.value >= 0x7F && isUnsafe(scalar) {
                let hex = String(scalar.value, radix: 16)
                out.append(contentsOf: ("\\u" + String(repeating: "0", count: 4 - hex.count) + hex).unicodeScalars)
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }

    private static func append(_ scalar: Unicode.Scalar, to out: inout String.UnicodeScalarView) {
        if scalar == "\\" {
            out.append("\\")
            out.append("\\")
        } else if scalar.value <= 0x1F || scalar.value == 0x7F {
            appendHex(UInt8(scalar.value), to: &out)
        } else if isUnsafe(scalar) {
            out.append(contentsOf: "\\u{\(String(scalar.value, radix: 16))}".unicodeScalars)
        } else {
            out.append(scalar)
        }
    }

    private static func appendHex(_ byte: UInt8, to out: inout String.UnicodeScalarView) {
        let digits = Array("0123456789abcdef".unicodeScalars)
        out.append("\\")
        out.append("x")
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0F)])
    }
}
