/// What a VM connection's state machine asks its channel handler (or the concentrator) to do.
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
public struct VMLinkStateMachine: Sendable {
    /// One line for a person who telnets to the proxy port by mistake.
    public static let plainClientMessage =
        "vspcd: this is the VMware virtual serial port proxy port, for ESXi only; to reach a console, telnet to the VM's own port (see `vspc list`).\r\n"
    public static let maxNameLength = 256

    public let acceptedServiceURI: String
    var decoder: TelnetDecoder
    var extensionAccepted = false
    var identifiersRequested = false
    var uuid: String?
    var name: String?
    var label = ""
    var proxyAccepted = false
    var identified = false
    var rejected = false
    var policy = TelnetOptionPolicy()

    public init(acceptedServiceURI: String = "vSPC.py", maxSubnegotiation: Int = 1024) {
        self.acceptedServiceURI = acceptedServiceURI
        self.decoder = TelnetDecoder(maxSubnegotiation: maxSubnegotiation)
    }

    public var vmUUID: String? { uuid }
    public var vmName: String? { name }
    public var serviceLabel: String { label }
    public var isIdentified: Bool { identified }
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
        for event in events where !rejected {
            handle(event, into: &actions)
        }
        return actions
    }

    /// The VM never agreed to the VMware extension within the negotiation time.
    public mutating func negotiationTimedOut() -> [VMLinkAction] {
        guard !extensionAccepted, !rejected else { return [] }
        rejected = true
        return [.log(.info, "peer did not negotiate the VMware extension; not an ESXi host"),
                .reject(message: Self.plainClientMessage)]
    }

    /// The VM gave its uuid but no name within the identification time: use the uuid as its name.
    public mutating func nameTimedOut() -> [VMLinkAction] {
        guard let uuid, name == nil, !identified, !rejected, proxyAccepted else { return [] }
        name = UUIDSpelling.classic(uuid)
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
                rejected = true
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
            if let uuid, uuid != normalized {
                rejected = true
                actions.append(.close(reason: "VM changed its uuid from \(uuid) to \(normalized)"))
                return
            }
            uuid = normalized
            identifyIfReady(into: &actions)
        case VMwareCommand.vmName:
            let newName = Self.sanitizeName(body)
            guard !newName.isEmpty else {
                actions.append(.log(.warning, "ignored empty VM-NAME"))
                return
            }
            let old = name
            name = newName
            if identified {
                if old != newName { actions.append(.renamed(newName)) }
            } else {
                identifyIfReady(into: &actions)
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
            if !identified { label = uri.label }
            proxyAccepted = true
            actions.append(.send(VMwareCommand.message(VMwareCommand.willProxy)))
            identifyIfReady(into: &actions) // the uuid and name may have come first
        } else {
            rejected = true
            actions.append(.send(VMwareCommand.message(VMwareCommand.wontProxy)))
            actions.append(.close(reason: "refused DO-PROXY for service URI \(text.debugDescription) (accepted: \(acceptedServiceURI))"))
        }
    }

    /// The concentrator made this connection (a vMotion destination, which sends no DO-PROXY) the VM's
    /// connection: later names are renames from now on.
    public mutating func adoptedByVMotion() {
        identified = true
    }

    /// A connection becomes a console only once its DO-PROXY was accepted: a vMotion destination (PEER, no
    /// DO-PROXY) also answers the uuid and name requests, and must not be taken for a fresh power-on.
    private mutating func identifyIfReady(into actions: inout [VMLinkAction]) {
        guard !identified, proxyAccepted, let uuid, let name else { return }
        identified = true
        actions.append(.identified(uuid: uuid, name: name, label: label))
    }

    /// A VM name as UTF-8 text without control characters, at most `maxNameLength` characters.
    static func sanitizeName(_ bytes: [UInt8]) -> String {
        let text = String(decoding: bytes, as: UTF8.self)
        let cleaned = String(String.UnicodeScalarView(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }))
        return String(cleaned.trimmingSpaces().prefix(maxNameLength))
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
