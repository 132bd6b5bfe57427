import Foundation

/// An IPv4 or IPv6 address as 16 bytes (IPv4 as IPv4-mapped IPv6, `::ffff:a.b.c.d`), so one comparison serves
/// both families and an IPv4 peer seen through an IPv6 socket still matches an IPv4 network.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public var isIPv4: Bool { bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF }

    /// Parses dotted IPv4 or IPv6 text (with `::`, an embedded IPv4 tail, and a `%zone` that is ignored).
    public init?(_ text: String) {
        let text = text.split(separator: "%", maxSplits: 1).first.map(String.init) ?? text
        if let v4 = Self.parseIPv4(Substring(text)) {
            bytes = [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + v4
        } else if let v6 = Self.parseIPv6(text) {
            bytes = v6
        } else {
            return nil
        }
    }

    private static func parseIPv4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let value = UInt8(part) else { return nil }
            out.append(value)
        }
        return out
    }

    private static func parseIPv6(_ text: String) -> [UInt8]? {
        guard text.count <= 45, text.contains(":") else { return nil }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String) -> [UInt8]? {
            if part.isEmpty { return [] }
            var out: [UInt8] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (i, piece) in pieces.enumerated() {
                if i == pieces.count - 1, piece.contains("."), let v4 = parseIPv4(piece) {
                    out += v4
                    continue
                }
                guard (1...4).contains(piece.count), let value = UInt16(piece, radix: 16) else { return nil }
                out += [UInt8(value >> 8), UInt8(value & 0xFF)]
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        if halves.count == 1 { return head.count == 16 ? head : nil }
        guard let tail = groups(halves[1]), head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }

    public var description: String {
        if isIPv4 { return bytes[12...].map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            .joined(separator: ":")
    }
}

/// A network: an address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`; a bare address is one host).
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let network: IPAddress
    /// Prefix length over the 16-byte form (an IPv4 /8 is 104).
    let bits: Int
    public let text: String

    public init?(_ text: String) {
        let trimmed = String(text.trimmingWhitespace())
        let parts = trimmed.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else { return nil }
        let width = address.isIPv4 ? 32 : 128
        var prefix = width
        if parts.count == 2 {
            guard let p = Int(parts[1]), (0...width).contains(p), parts[1].allSatisfy({ $0.isASCII && $0.isNumber })
            else { return nil }
            prefix = p
        }
        network = address
        bits = prefix + (128 - width)
        self.text = trimmed
    }

    public func contains(_ address: IPAddress) -> Bool {
        var remaining = bits
        for i in 0..<16 where remaining > 0 {
            let take = min(8, remaining)
            let mask: UInt8 = take == 8 ? 0xFF : ~(0xFF >> UInt8(take))
            if address.bytes[i] & mask != network.bytes[i] & mask { return false }
            remaining -= take
        }
        return true
    }

    public var description: String { text }
}

/// A list of networks that does not parse: its message names the first entry that is not a network.
public struct AllowListError: Error, Equatable, Sendable {
    public var message: String
}

/// `--proxy-allow`: the networks ESXi hosts may connect from. Empty means everyone (the default).
public struct AddressAllowList: Sendable, Equatable {
    public var networks: [CIDR]

    public init(_ networks: [CIDR] = []) { self.networks = networks }

    /// Parses `CIDR[,CIDR...]`; the error names the first entry that is not a network.
    /// `any` is the explicit "everyone"; an empty list is an error (it used to mean everyone, silently).
    public static func parse(_ text: String) -> Result<AddressAllowList, AllowListError> {
        if text.trimmingWhitespace().lowercased() == "any" { return .success(AddressAllowList()) }
        var networks: [CIDR] = []
        for entry in text.split(separator: ",") where !String(entry).trimmingWhitespace().isEmpty {
            guard let cidr = CIDR(String(entry)) else {
                return .failure(AllowListError(message: "has an entry that is not an IPv4 or IPv6 network: \(String(entry).debugDescription)"))
            }
            networks.append(cidr)
        }
        guard !networks.isEmpty else {
            return .failure(AllowListError(message: "names no network; give CIDR[,CIDR...], or any to allow every address"))
        }
        return .success(AddressAllowList(networks))
    }

    public var allowsEveryone: Bool { networks.isEmpty }

    /// 127.0.0.0/8 and ::1: this machine only (`--http-allow`'s default).
    public static let loopback: AddressAllowList = {
        guard case .success(let list) = parse("127.0.0.0/8,::1") else { return AddressAllowList() }
        return list
    }()

    /// Whether a peer may connect; a peer whose address cannot be read is refused unless everyone may.
    public func allows(_ address: IPAddress?) -> Bool {
        if networks.isEmpty { return true }
        guard let address else { return false }
        return networks.contains { $0.contains(address) }
    }
}
