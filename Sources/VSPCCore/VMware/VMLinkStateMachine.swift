/// What a VM connection's state machine asks the concentrator to do.
public enum VMLinkAction: Equatable, Sendable {
    /// Bytes for the VM, already telnet-encoded.
    case send([UInt8])
    /// Console output from the VM (decoded).
    case vmData([UInt8])
    /// The VM told us its uuid (32 lowercase hex) and name; `label` comes from DO-PROXY (`?port=`).
    case identified(uuid: String, name: String, label: String)
    /// The VM's name changed after identification.
    case renamed(String)
    case vmotionBegin(sequence: [UInt8])
    case vmotionPeer(cookie: [UInt8])
    case vmotionComplete(sequence: [UInt8])
    case vmotionAbort
    /// The VM answered a `DO TIMING-MARK` probe (WILL or WONT): the connection is alive.
    case timingMark
    /// Send this text (a plain telnet client on the proxy port), then close.
    case reject(message: String)
    /// Close the connection.
    case close(reason: String)
    case log(LogLevel, String)

    public enum LogLevel: Sendable { case debug, info, warning }
}

/// The per-connection protocol of a VM on the proxy port: telnet option negotiation, the VMware extension's
/// identification (KNOWN-SUBOPTIONS, VC UUID, name, DO-PROXY) and the recognition of vMotion sub-commands.
/// Decisions that need the whole concentrator (vMotion) are passed up as actions.
///
/// The identification is a state (`State`), each carrying what it needs. The VMware extension's telnet option
/// and the request for the identifiers are kept apart from it: a VM may send its sub-commands in any order.
public struct VMLinkStateMachine: Sendable {
    /// Where the connection stands.
    enum State: Sendable {
        /// The VM introduces itself: its uuid, its name and its DO-PROXY come in any order.
        case introducing(Introduction)
        /// A console's connection: its DO-PROXY accepted and its uuid and name known, or made the VM's
        /// connection by a vMotion (a destination sends no DO-PROXY). Later names are renames.
        case identified(Identity)
        /// Not an ESXi host, a refused service URI or a changed uuid: the rest of its input is ignored. The
        /// state it left is kept for what the connection said about itself.
        indirect case rejected(after: State)
    }

    struct Introduction: Sendable {
        var uuid: String?
        var name: String?
        /// The label (`?port=`, "" without one) of the DO-PROXY accepted; nil until one is.
        var proxyLabel: String?
    }

    struct Identity: Sendable {
        /// Known once the VM sends it (a connection identified by a vMotion may not have yet).
        var uuid: String?
        var name: String?
        var label: String
    }

    /// One line for a person who telnets to the proxy port by mistake.
    public static let plainClientMessage =
        "vspcd: this is the VMware virtual serial port proxy port, for ESXi only; to reach a console, telnet to the VM's own port (see `vspc list`).\r\n"
    public static let maxNameLength = 256

    public let acceptedServiceURI: String
    var decoder: TelnetDecoder
    var state = State.introducing(Introduction())
    /// The VM agreed to the VMware extension (WILL VMWARE-EXT).
    var extensionAccepted = false
    /// The uuid and name were asked for (once, after the VM's first KNOWN-SUBOPTIONS).
    var identifiersRequested = false
    var policy = TelnetOptionPolicy()

    public init(acceptedServiceURI: String = "vSPC.py", maxSubnegotiation: Int = 1024) {
        self.acceptedServiceURI = acceptedServiceURI
        self.decoder = TelnetDecoder(maxSubnegotiation: maxSubnegotiation)
    }

    public var vmUUID: String? { state.uuid }
    public var vmName: String? { state.name }
    public var serviceLabel: String { state.label }
    public var isIdentified: Bool { state.isIdentified }
    /// A DO-PROXY was accepted (or the connection is identified, which needs none after a vMotion).
    var proxyAccepted: Bool { state.proxyAccepted }
    var isRejected: Bool {
        if case .rejected = state { return true }
        return false
    }
    public var hasExtension: Bool { extensionAccepted }
    /// The bytes so far end inside a telnet sequence (a connection closed now was cut off mid-message).
    public var isMidSequence: Bool { decoder.isMidSequence }

    /// The server's opening: WILL BINARY, WILL SGA, WILL ECHO, DO BINARY, DO SGA, DO VMWARE-EXT.
    public static let opening: [UInt8] = TelnetOptionPolicy.opening + [0xFF, 0xFD, TelnetOption.vmwareExt]

    public func start() -> [VMLinkAction] {
        [.send(Self.opening)]
    }

    /// Bytes from the VM.
    public mutating func received<C: Collection>(_ bytes: C) -> [VMLinkAction] where C.Element == UInt8 {
        var actions: [VMLinkAction] = []
        var events: [TelnetEvent] = []
        decoder.decode(bytes) { events.append($0) }
        for event in events where !isRejected {
            handle(event, into: &actions)
        }
        return actions
    }

    /// The VM never agreed to the VMware extension within the negotiation time.
    public mutating func negotiationTimedOut() -> [VMLinkAction] {
        guard !extensionAccepted, !isRejected else { return [] }
        state = .rejected(after: state)
        return [.log(.info, "peer did not negotiate the VMware extension; not an ESXi host"),
                .reject(message: Self.plainClientMessage)]
    }

    /// The VM gave its uuid but no name within the identification time: use the uuid as its name.
    public mutating func nameTimedOut() -> [VMLinkAction] {
        guard case .introducing(var introduction) = state, let uuid = introduction.uuid, introduction.name == nil,
              introduction.proxyLabel != nil else { return [] }
        introduction.name = UUIDSpelling.classic(uuid)
        state = .introducing(introduction)
        var actions: [VMLinkAction] = [.log(.warning, "VM \(uuid) sent no name; using its uuid")]
        identifyIfReady(into: &actions)
        return actions
    }

    private mutating func handle(_ event: TelnetEvent, into actions: inout [VMLinkAction]) {
        switch event {
        case .data(let bytes):
            actions.append(.vmData(bytes))
        case .negotiate(let verb, let option):
            negotiate(verb, option, into: &actions)
        case .subnegotiation(let option, let payload):
            if option == TelnetOption.vmwareExt {
                vmware(payload, into: &actions)
            } else {
                actions.append(.log(.debug, "ignored subnegotiation for option \(option) (\(payload.count) bytes)"))
            }
        case .subnegotiationTooLong(let option):
            actions.append(.log(.warning, "discarded an oversized subnegotiation for option \(option)"))
        case .subnegotiationMalformed(let option):
            actions.append(.log(.warning, "discarded a malformed subnegotiation for option \(option)"))
        case .command:
            break
        }
    }

    /// The VMware extension is this leg's own; every other option follows the policy shared with people's
    /// connections (AUTHENTICATION, COM-PORT and the rest are refused once).
    private mutating func negotiate(_ verb: TelnetVerb, _ option: UInt8, into actions: inout [VMLinkAction]) {
        switch (verb, option) {
        case (.will, TelnetOption.vmwareExt):
            extensionAccepted = true
        case (.wont, TelnetOption.vmwareExt):
            if !extensionAccepted {
                state = .rejected(after: state)
                actions.append(.log(.info, "peer refused the VMware extension; not an ESXi host"))
                actions.append(.reject(message: Self.plainClientMessage))
            }
        case (.will, TelnetOption.timingMark), (.wont, TelnetOption.timingMark):
            actions.append(.timingMark) // the answer to a liveness probe; needs no reply
        default:
            if let reply = policy.answer(verb, option) { actions.append(.send(reply)) }
        }
    }

    private mutating func vmware(_ payload: [UInt8], into actions: inout [VMLinkAction]) {
        guard let command = payload.first else {
            actions.append(.log(.warning, "empty VMware subnegotiation ignored"))
            return
        }
        let body = Array(payload.dropFirst())
        switch command {
        case VMwareCommand.knownSuboptions1:
            actions.append(.send(VMwareCommand.message(VMwareCommand.knownSuboptions2, VMwareCommand.supported)))
            if !identifiersRequested {
                identifiersRequested = true
                actions.append(.send(VMwareCommand.message(VMwareCommand.getVMVCUUID)
                    + VMwareCommand.message(VMwareCommand.getVMName)))
            }
        case VMwareCommand.unknownSuboptionRcvd1:
            // Logged, and answered like any unsolicited sub-command (as the vSPC.py family does), so a VM
            // that sends it with a payload gets a well-formed reply rather than silence or a dropped link.
            actions.append(.log(.info, "VM did not understand sub-command \(body.first.map(String.init) ?? "?")"))
            actions.append(.send(VMwareCommand.message(VMwareCommand.unknownSuboptionRcvd2, [command])))
        case VMwareCommand.doProxy:
            doProxy(body, into: &actions)
        case VMwareCommand.vmVCUUID:
            let text = String(decoding: body, as: UTF8.self)
            guard let normalized = UUIDSpelling.normalize(text) else {
                actions.append(.log(.warning, "ignored malformed VM-VC-UUID \(text.debugDescription)"))
                return
            }
            if let uuid = state.uuid, uuid != normalized {
                state = .rejected(after: state)
                actions.append(.close(reason: "VM changed its uuid from \(uuid) to \(normalized)"))
                return
            }
            switch state {
            case .introducing(var introduction):
                introduction.uuid = normalized
                state = .introducing(introduction)
                identifyIfReady(into: &actions)
            case .identified(var identity):
                identity.uuid = normalized
                state = .identified(identity)
            case .rejected:
                break
            }
        case VMwareCommand.vmName:
            let newName = Self.sanitizeName(body)
            guard !newName.isEmpty else {
                actions.append(.log(.warning, "ignored empty VM-NAME"))
                return
            }
            switch state {
            case .introducing(var introduction):
                introduction.name = newName
                state = .introducing(introduction)
                identifyIfReady(into: &actions)
            case .identified(var identity):
                let old = identity.name
                identity.name = newName
                state = .identified(identity)
                if old != newName { actions.append(.renamed(newName)) }
            case .rejected:
                break
            }
        case VMwareCommand.vmotionBegin:
            actions.append(.vmotionBegin(sequence: body))
        case VMwareCommand.vmotionPeer:
            actions.append(.vmotionPeer(cookie: body))
        case VMwareCommand.vmotionComplete:
            actions.append(.vmotionComplete(sequence: body))
        case VMwareCommand.vmotionAbort:
            actions.append(.vmotionAbort)
        default:
            actions.append(.log(.info, "answered unknown VMware sub-command \(command) with UNKNOWN-SUBOPTION-RCVD-2"))
            actions.append(.send(VMwareCommand.message(VMwareCommand.unknownSuboptionRcvd2, [command])))
        }
    }

    private mutating func doProxy(_ body: [UInt8], into actions: inout [VMLinkAction]) {
        let direction = body.first.map { Character(Unicode.Scalar($0)) }
        let text = String(decoding: body.dropFirst(), as: UTF8.self)
        if let uri = ServiceURI(parsing: text), uri.base == acceptedServiceURI, direction == "S" || direction == "C" {
            // A later DO-PROXY does not relabel an identified console.
            if case .introducing(var introduction) = state {
                introduction.proxyLabel = uri.label
                state = .introducing(introduction)
            }
            actions.append(.send(VMwareCommand.message(VMwareCommand.willProxy)))
            identifyIfReady(into: &actions) // the uuid and name may have come first
        } else {
            state = .rejected(after: state)
            actions.append(.send(VMwareCommand.message(VMwareCommand.wontProxy)))
            actions.append(.close(reason: "refused DO-PROXY for service URI \(text.debugDescription) (accepted: \(acceptedServiceURI))"))
        }
    }

    /// The concentrator made this connection (a vMotion destination, which sends no DO-PROXY) the VM's
    /// connection: later names are renames from now on.
    public mutating func adoptedByVMotion() {
        state = state.adopted
    }

    /// A connection becomes a console only once its DO-PROXY was accepted: a vMotion destination (PEER, no
    /// DO-PROXY) also answers the uuid and name requests, and must not be taken for a fresh power-on.
    private mutating func identifyIfReady(into actions: inout [VMLinkAction]) {
        guard case .introducing(let introduction) = state, let label = introduction.proxyLabel,
              let uuid = introduction.uuid, let name = introduction.name else { return }
        state = .identified(Identity(uuid: uuid, name: name, label: label))
        actions.append(.identified(uuid: uuid, name: name, label: label))
    }

    /// A VM name as UTF-8 text without control characters, at most `maxNameLength` characters.
    static func sanitizeName(_ bytes: [UInt8]) -> String {
        let text = String(decoding: bytes, as: UTF8.self)
        let cleaned = String(String.UnicodeScalarView(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }))
        return String(cleaned.trimmingSpaces().prefix(maxNameLength))
    }
}

extension VMLinkStateMachine.State {
    var uuid: String? {
        switch self {
        case .introducing(let introduction): introduction.uuid
        case .identified(let identity): identity.uuid
        case .rejected(let before): before.uuid
        }
    }

    var name: String? {
        switch self {
        case .introducing(let introduction): introduction.name
        case .identified(let identity): identity.name
        case .rejected(let before): before.name
        }
    }

    var label: String {
        switch self {
        case .introducing(let introduction): introduction.proxyLabel ?? ""
        case .identified(let identity): identity.label
        case .rejected(let before): before.label
        }
    }

    var isIdentified: Bool {
        switch self {
        case .introducing: false
        case .identified: true
        case .rejected(let before): before.isIdentified
        }
    }

    var proxyAccepted: Bool {
        switch self {
        case .introducing(let introduction): introduction.proxyLabel != nil
        case .identified: true
        case .rejected(let before): before.proxyAccepted
        }
    }

    /// The state once a vMotion made the connection the VM's: identified with what it said so far.
    var adopted: Self {
        switch self {
        case .introducing(let introduction):
            .identified(.init(uuid: introduction.uuid, name: introduction.name, label: introduction.proxyLabel ?? ""))
        case .identified:
            self
        case .rejected(let before):
            .rejected(after: before.adopted)
        }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
