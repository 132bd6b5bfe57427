/// JSON string literals for hand-assembled JSON lines (log lines keep their fields in a fixed order, which
/// `JSONEncoder` does not). Quotes, backslashes and every control `VisibleEscaping` rewrites are escaped, so
/// the literal is one line and decodes to exactly `text`.
public enum JSONText {
    public static func quoted(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if VisibleEscaping.needsEscape(scalar) {
                    out += "\\u" + VisibleEscaping.hex(scalar.value, digits: 4)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
        return out
    }
}
