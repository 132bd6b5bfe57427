/// The telnet options vspcd agrees to, on both legs (a VM's connection and a person's): BINARY and
/// SUPPRESS-GO-AHEAD both ways, and ECHO on our side. Every other option is refused, each refusal sent once per
/// connection, so two peers that keep refusing each other cannot loop.
public struct TelnetOptionPolicy: Sendable {
    /// Options the peer may enable on its side (answers to our DO).
    public static let peerMay: Set<UInt8> = [TelnetOption.binary, TelnetOption.suppressGoAhead]
    /// Options we enable on our side (answers to our WILL).
    public static let weWill: Set<UInt8> = [TelnetOption.binary, TelnetOption.suppressGoAhead, TelnetOption.echo]

    /// WILL BINARY, WILL SGA, WILL ECHO, DO BINARY, DO SGA.
    public static let opening: [UInt8] = [
        0xFF, 0xFB, 0x00, 0xFF, 0xFB, 0x03, 0xFF, 0xFB, 0x01,
        0xFF, 0xFD, 0x00, 0xFF, 0xFD, 0x03,
    ]

    private var refusals = TelnetRefusals()

    public init() {}

    /// The reply to the peer's `verb option`: nil when it needs none (agreed, or already refused once).
    public mutating func answer(_ verb: TelnetVerb, _ option: UInt8) -> [UInt8]? {
        switch verb {
        case .will: return Self.peerMay.contains(option) ? nil : refusals.refuse(.dont, option)
        case .do: return Self.weWill.contains(option) ? nil : refusals.refuse(.wont, option)
        case .wont, .dont: return nil
        }
    }
}

/// The refusals (DONT/WONT) already sent on a connection.
public struct TelnetRefusals: Sendable {
    private var sent: Set<UInt16> = []

    public init() {}

    /// The bytes of `verb option`, or nil if that refusal was sent before.
    public mutating func refuse(_ verb: TelnetVerb, _ option: UInt8) -> [UInt8]? {
        sent.insert(UInt16(verb.rawValue) << 8 | UInt16(option)).inserted ? TelnetEncoder.negotiate(verb, option) : nil
    }
}
