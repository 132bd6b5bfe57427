/// Makes text safe to print on one line of a terminal or a log: the controls that could end a line, move the
/// cursor, start an escape sequence or reorder text are replaced by visible escapes.
///
/// - C0 controls (U+0000-U+001F) and DEL (U+007F) become `\xNN`, e.g. ESC is `\x1b` and a newline `\x0a`;
/// - C1 controls (U+0080-U+009F) become `\u{NN}`, e.g. `\u{9b}` (a terminal may read it as CSI);
/// - the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) become `\u{NNNN}`.
///
/// Everything else, other Unicode text included, is kept. A name with a newline therefore cannot forge a log
/// line, and one with ESC cannot drive the reader's terminal. Pass `escapeBackslash: true` to also write `\`
/// as `\\`, which makes the escaping reversible.
public enum VisibleEscaping {
    /// True for the scalars `escape` rewrites.
    @inlinable
    public static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        return v < 0x20 || (v >= 0x7F && v <= 0x9F) || (v >= 0x202A && v <= 0x202E) || (v >= 0x2066 && v <= 0x2069)
    }

    public static func escape(_ text: String, escapeBackslash: Bool = false) -> String {
        let scalars = text.unicodeScalars
        guard scalars.contains(where: { needsEscape($0) || (escapeBackslash && $0 == "\\") }) else { return text }
        var out = String.UnicodeScalarView()
        out.reserveCapacity(scalars.count + 16)
        for scalar in scalars {
            let v = scalar.value
            if escapeBackslash && scalar == "\\" {
                out.append(contentsOf: "\\\\".unicodeScalars)
            } else if v < 0x20 || v == 0x7F {
                out.append(contentsOf: "\\x".unicodeScalars)
                out.append(contentsOf: hex(v, digits: 2).unicodeScalars)
            } else if needsEscape(scalar) {
                out.append(contentsOf: "\\u{".unicodeScalars)
                out.append(contentsOf: hex(v, digits: 2).unicodeScalars)
                out.append("}")
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }

    static func hex(_ value: UInt32, digits: Int) -> String {
        let s = String(value, radix: 16)
        return s.count >= digits ? s : String(repeating: "0", count: digits - s.count) + s
    }
}
