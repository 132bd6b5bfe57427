/// Conversions between the many spellings of a VM's BIOS UUID.
public enum UUIDSpelling {
    private static func isHex(_ c: Character) -> Bool {
        c.isASCII && c.isHexDigit
    }

    /// Accepts any common spelling: "01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00" (VMware wire),
    /// "0123456789abcdef-fedcba9800000000" (vSPC.py), "0123456789ABCDEFFEDCBA9800000000",
    /// RFC 4122 "01234567-89ab-cdef-fedc-ba9800000000" (optionally in braces);
    /// returns 32 lowercase hex digits or nil.
    public static func normalize(_ s: String) -> String? {
        var out = ""
        out.reserveCapacity(32)
        var body = Substring(s.trimmingWhitespace())
        if body.hasPrefix("{") && body.hasSuffix("}") && body.count >= 2 {
            body = body.dropFirst().dropLast()
        }
        for c in body {
            if c == " " || c == "-" || c == "\t" { continue }
            guard isHex(c) else { return nil }
            out.append(Character(c.lowercased()))
            if out.count > 32 { return nil }
        }
        return out.count == 32 ? out : nil
    }

    /// 32 hex -> "xxxxxxxxxxxxxxxx-xxxxxxxxxxxxxxxx" (vSPC.py listing form).
    /// Input that is not a valid uuid is normalized first if possible, else returned unchanged.
    public static func classic(_ hex32: String) -> String {
        guard let h = normalize(hex32) else { return hex32 }
        let mid = h.index(h.startIndex, offsetBy: 16)
        return "\(h[..<mid])-\(h[mid...])"
    }

    /// For prefix search: strips spaces/dashes, lowercases; returns nil if it contains non-hex chars.
    public static func hexPrefix(_ s: String) -> String? {
        var out = ""
        for c in s {
            if c == " " || c == "-" || c == "\t" { continue }
            guard isHex(c) else { return nil }
            out.append(Character(c.lowercased()))
        }
        return out
    }
}

extension String {
    /// The string without leading and trailing white space.
    public func trimmingWhitespace() -> Substring {
        var sub = Substring(self)
        while let f = sub.first, f.isWhitespace { sub.removeFirst() }
        while let l = sub.last, l.isWhitespace { sub.removeLast() }
        return sub
    }
}
