/// The subject of an X.509 certificate (DER), as `C=DE,O=Example,CN=alice`: the names in the certificate's
/// order, the usual attributes by their short names and others by their dotted OID. It reads only what it
/// needs and checks every length, so a malformed certificate gives nil, never a crash.
enum APICertificateSubject {
    static func subject(der: [UInt8]) -> String? {
        var reader = DER(bytes: der[...])
        guard let certificate = reader.next(), certificate.tag == 0x30 else { return nil }
        var inCertificate = DER(bytes: certificate.value)
        guard let tbs = inCertificate.next(), tbs.tag == 0x30 else { return nil }
        var fields = DER(bytes: tbs.value)
        guard var element = fields.next() else { return nil }
        if element.tag == 0xA0 { element = fields.next() ?? element }  // [0] version; then the serial number
        // serial (element), signature algorithm, issuer, validity, then the subject.
        for _ in 0..<3 { guard fields.next() != nil else { return nil } }
        guard let subject = fields.next(), subject.tag == 0x30 else { return nil }
        var parts: [String] = []
        var names = DER(bytes: subject.value)
        while let set = names.next() {
            guard set.tag == 0x31 else { return nil }
            var attributes = DER(bytes: set.value)
            while let attribute = attributes.next() {
                guard attribute.tag == 0x30 else { return nil }
                var pair = DER(bytes: attribute.value)
                guard let oid = pair.next(), oid.tag == 0x06, let value = pair.next() else { return nil }
                let dotted = Self.dotted(oid.value)
                let name = shortNames[dotted] ?? dotted
                parts.append("\(name)=\(String(decoding: value.value, as: UTF8.self))")
                if parts.count > 32 { return nil }
            }
        }
        return parts.joined(separator: ",")
    }

    static let shortNames = [
        "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
        "1.2.840.113549.1.9.1": "emailAddress", "0.9.2342.19200300.100.1.1": "UID", "0.9.2342.19200300.100.1.25": "DC",
    ]

    /// An OID's content octets as dotted decimal.
    static func dotted(_ bytes: ArraySlice<UInt8>) -> String {
        guard let first = bytes.first else { return "" }
        var arcs = [String(first < 80 ? first / 40 : 2), String(first < 80 ? first % 40 : first - 80)]
        var value: UInt64 = 0
        for byte in bytes.dropFirst() {
            guard value < (1 << 56) else { return "?" }
            value = value << 7 | UInt64(byte & 0x7F)
            if byte & 0x80 == 0 {
                arcs.append(String(value))
                value = 0
            }
        }
        return arcs.joined(separator: ".")
    }

    /// DER elements one after another: tag, definite length (up to 4 length bytes), value.
    struct DER {
        var bytes: ArraySlice<UInt8>

        mutating func next() -> (tag: UInt8, value: ArraySlice<UInt8>)? {
            guard bytes.count >= 2, let tag = bytes.first else { return nil }
            var at = bytes.startIndex + 1
            var length = Int(bytes[at])
            at += 1
            if length & 0x80 != 0 {
                let count = length & 0x7F
                guard count >= 1, count <= 4, bytes.endIndex - at >= count else { return nil }
                length = 0
                for _ in 0..<count {
                    length = length << 8 | Int(bytes[at])
                    at += 1
                }
            }
            guard length >= 0, bytes.endIndex - at >= length else { return nil }
            let value = bytes[at..<(at + length)]
            bytes = bytes[(at + length)...]
            return (tag, value)
        }
    }
}
