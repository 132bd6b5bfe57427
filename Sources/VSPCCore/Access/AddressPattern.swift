/// The `from="pattern-list"` option of an authorized key: the client addresses the key may be used from.
///
/// Entries are separated by commas; each is one of
/// * an address (`192.0.2.7`, `2001:db8::1`) or a network (`10.0.0.0/8`, `2001:db8::/32`);
/// * an IPv4 wildcard over the dotted address, `*` any run of characters and `?` one (`10.1.*`, `192.0.2.?`, `*`);
/// * any of these after `!`: a client that matches a negated entry is refused, whatever the other entries say.
///
/// The key may be used when the client's address matches at least one entry and no negated one (OpenSSH's rule).
/// Host names are not looked up (the server never resolves names), so a list that names a host makes the line
/// invalid rather than silently never (or, negated, always) matching. An IPv4 client seen through an IPv6 socket
/// (`::ffff:a.b.c.d`) matches as its IPv4 address.
public struct AddressPatternList: Sendable, Hashable {
    public enum Entry: Sendable, Hashable {
        case network(CIDR)
        case ipv4Wildcard(String)
    }

    public struct Item: Sendable, Hashable {
        public var negated: Bool
        public var entry: Entry
    }

    public let items: [Item]
    /// The list as written in the file.
    public let text: String

    /// Parses the option's value; the error says which entry is not an address, network or IPv4 wildcard.
    public static func parse(_ text: String) -> Result<AddressPatternList, AuthorizedKeysOptionError> {
        var items: [Item] = []
        for raw in text.split(separator: ",", omittingEmptySubsequences: false) {
            var entry = String(String(raw).trimmingWhitespace())
            if entry.isEmpty { continue }
            var negated = false
            if entry.hasPrefix("!") {
                negated = true
                entry.removeFirst()
            }
            guard !entry.isEmpty else { return .failure(.init("option from has an empty negated entry")) }
            if entry.contains("/") || IPAddress(entry) != nil {
                guard !entry.contains("%"), let cidr = CIDR(entry) else {
                    return .failure(.init("option from: \(Self.show(entry)) is not a valid address or network"))
                }
                items.append(Item(negated: negated, entry: .network(cidr)))
            } else if entry.unicodeScalars.allSatisfy({ "0123456789.*?".unicodeScalars.contains($0) }) {
                items.append(Item(negated: negated, entry: .ipv4Wildcard(entry)))
            } else {
                return .failure(.init("option from names \(Self.show(entry)), which is not an address or network; "
                                      + "this server does not look up host names, so the line is skipped"))
            }
        }
        guard !items.isEmpty else { return .failure(.init("option from lists no address")) }
        return .success(AddressPatternList(items: items, text: text))
    }

    /// Whether a client at `address` may use the key; an unknown address (nil) never may.
    public func allows(_ address: IPAddress?) -> Bool {
        guard let address else { return false }
        var matched = false
        for item in items where Self.matches(item.entry, address) {
            if item.negated { return false }
            matched = true
        }
        return matched
    }

    static func matches(_ entry: Entry, _ address: IPAddress) -> Bool {
        switch entry {
        case .network(let cidr):
            return cidr.contains(address)
        case .ipv4Wildcard(let pattern):
            return address.isIPv4 && VMGlob.matches(pattern, address.description)
        }
    }

    static func show(_ text: String) -> String {
        let clean = String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
        return "\"" + (clean.count > 40 ? String(clean.prefix(40)) + "..." : clean) + "\""
    }
}

/// Why an option's value was not accepted (the text of the problem logged for the line).
public struct AuthorizedKeysOptionError: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}
