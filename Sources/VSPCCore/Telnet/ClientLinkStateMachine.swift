/// A person's telnet connection on a console's port: the opening, the option policy shared with the VM leg,
/// and the decoding of what the person types. NAWS, TTYPE and other subnegotiations are not needed and ignored.
public struct ClientLinkStateMachine: Sendable {
    public struct Output: Equatable, Sendable {
        /// Console input for the VM (decoded: IAC IAC is one 0xFF).
        public var input: [UInt8] = []
        /// Telnet replies for the person's client, already encoded.
        public var replies: [UInt8] = []
    }

    var decoder = TelnetDecoder(maxSubnegotiation: 512)
    var policy = TelnetOptionPolicy()

    public init() {}

    /// What the server sends first: WILL BINARY, WILL SGA, WILL ECHO, DO BINARY, DO SGA.
    public static var opening: [UInt8] { TelnetOptionPolicy.opening }

    public mutating func received<C: Collection>(_ bytes: C) -> Output where C.Element == UInt8 {
        var out = Output()
        var policy = self.policy
        decoder.decode(bytes) { event in
            switch event {
            case .data(let data):
                out.input.append(contentsOf: data)
            case .negotiate(let verb, let option):
                if let reply = policy.answer(verb, option) { out.replies.append(contentsOf: reply) }
            default:
                break
            }
        }
        self.policy = policy
        return out
    }
}
