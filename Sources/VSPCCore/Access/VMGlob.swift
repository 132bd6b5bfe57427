/// The globs of an authorized key's `vms="..."` option: `*` stands for any run of characters (none too), `?` for
/// exactly one character, and every other character for itself. There is no escape and no character class.
///
/// Matching is iterative: on a mismatch it resumes after the most recent `*`, so a pattern of n characters against
/// a text of m characters costs at most O(n × m), whatever the pattern (no exponential backtracking).
///
/// In `vms=`, a plain glob names VMs: it matches the VM's name exactly, case-sensitive (as OpenSSH compares user
/// and host names), and never its uuid. A glob written `uuid:GLOB` matches the uuid only: the glob and the uuid are
/// both taken as 32 lowercase hex digits (dashes, spaces and braces dropped, letters lowercased), so
/// `uuid:421A5C00-*` and `uuid:421a5c00*` are the same glob, and any spelling of the uuid matches it.
public enum VMGlob {
    /// The prefix of a glob that matches uuids.
    public static let uuidPrefix = "uuid:"

    /// Whether the `vms=` glob `glob` lets a key reach the VM `name` with uuid `uuid` (any spelling).
    public static func matchesVM(_ glob: String, name: String, uuid: String) -> Bool {
        if glob.count > uuidPrefix.count, glob.lowercased().hasPrefix(uuidPrefix) {
            return matchesUUID(String(glob.dropFirst(uuidPrefix.count)), uuid)
        }
        return matches(glob, name)
    }

    /// Whether the uuid glob `pattern` (without `uuid:`) matches `uuid`: both normalized to lowercase hex without
    /// separators. A VM whose uuid is not a uuid matches no uuid glob.
    public static func matchesUUID(_ pattern: String, _ uuid: String) -> Bool {
        guard let hex = VMUUIDForms.hex32(uuid) else { return false }
        var body = Substring(pattern.lowercased())
        if body.hasPrefix("{"), body.hasSuffix("}"), body.count >= 2 { body = body.dropFirst().dropLast() }
        let normalized = body.filter { $0 != "-" && $0 != " " }
        return matches(Array(normalized), Array(hex))
    }

    /// Whether `pattern` matches the whole of `text`. Characters compare exactly (case-sensitive).
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        matches(Array(pattern), Array(text))
    }

    /// Whether `pattern` matches the whole of `text`, ignoring the case of letters.
    public static func matchesIgnoringCase(_ pattern: String, _ text: String) -> Bool {
        matches(Array(pattern.lowercased()), Array(text.lowercased()))
    }

    static func matches(_ p: [Character], _ t: [Character]) -> Bool {
        var pi = 0
        var ti = 0
        // The position just after the last `*` seen, and the text position that star currently stops at.
        var resumePattern = -1
        var resumeText = 0
        while ti < t.count {
            if pi < p.count, p[pi] == "*" {
                resumePattern = pi + 1
                resumeText = ti
                pi += 1
            } else if pi < p.count, p[pi] == "?" || p[pi] == t[ti] {
                pi += 1
                ti += 1
            } else if resumePattern >= 0 {
                // Let the last star swallow one more character and try again from just after it.
                resumeText += 1
                ti = resumeText
                pi = resumePattern
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}

/// Spellings of a VM's uuid that a `vms=` glob may be written in.
public enum VMUUIDForms {
    /// For a uuid in any spelling (32 hex digits, VMware's 16-16 or spaced form, RFC 4122, in braces or not):
    /// the 32-hex form, the 16-16 form and the RFC 4122 8-4-4-4-12 form, all lowercase. A string that is not a
    /// uuid gives itself, lowercased.
    public static func forms(of uuid: String) -> [String] {
        guard let hex = hex32(uuid) else { return [uuid.lowercased()] }
        let c = Array(hex)
        func part(_ from: Int, _ to: Int) -> String { String(c[from..<to]) }
        return [
            hex,
            part(0, 16) + "-" + part(16, 32),
            [part(0, 8), part(8, 12), part(12, 16), part(16, 20), part(20, 32)].joined(separator: "-"),
        ]
    }

    /// 32 lowercase hex digits, or nil when `text` is not a uuid (spaces, dashes and surrounding braces ignored).
    public static func hex32(_ text: String) -> String? {
        var body = Substring(text)
        if body.hasPrefix("{"), body.hasSuffix("}"), body.count >= 2 { body = body.dropFirst().dropLast() }
        var out = ""
        out.reserveCapacity(32)
        for c in body.unicodeScalars {
            if c == " " || c == "-" { continue }
            guard c.isASCII, let v = UInt8(exactly: c.value), isHex(v) else { return nil }
            out.unicodeScalars.append(Unicode.Scalar(v | (v >= 0x41 && v <= 0x46 ? 0x20 : 0)))
            if out.unicodeScalars.count > 32 { return nil }
        }
        return out.unicodeScalars.count == 32 ? out : nil
    }

    private static func isHex(_ v: UInt8) -> Bool {
        (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x46) || (v >= 0x61 && v <= 0x66)
    }
}
