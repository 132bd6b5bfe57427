import Foundation
import NIOCore
import NIOPosix
import VSPCCore

/// One serial port of a VM as ESXi drives it towards a concentrator (see the capture in the project's test
/// fixtures): WILL AUTHENTICATION first, answers to the server's options, WILL VMWARE-EXT, KNOWN-SUBOPTIONS-1,
/// then DO-PROXY (a fresh power-on) or VMOTION-PEER (a vMotion destination), the uuid and name on request,
/// WILL COM-PORT, and in-band serial data. Bytes typed by people on the VM's port arrive in `data`.
public final class SimulatedVM: SimConnection, @unchecked Sendable {
    public enum Role: Sendable {
        /// A fresh power-on: DO-PROXY with the service URI.
        case source
        /// A vMotion destination: VMOTION-PEER with sequence + secret instead of DO-PROXY.
        case destination(sequence: [UInt8], secret: [UInt8])
    }

    public enum VMotionReply: Equatable, Sendable {
        case goahead(secret: [UInt8])
        case notNow
    }

    /// The 22 sub-commands ESXi announces in KNOWN-SUBOPTIONS-1.
    public static let esxiKnownSuboptions: [UInt8] = [0, 1, 2, 3, 40, 41, 43, 44, 45, 46, 48, 70, 71, 73, 80, 81, 84, 85, 86, 87, 82, 83]

    public let uuid: String
    public private(set) var name: String
    public let serviceURI: String
    public let role: Role

    // Observed from the server (guarded by `lock`).
    private var proxyAnswer: UInt8?
    private var peerOK: [UInt8]?
    private var goahead: [UInt8]?
    private var notNow: [UInt8]?
    private var unknownCodes: [UInt8] = []
    private var knownSuboptions2: [UInt8]?
    private var vmwareMessages: [[UInt8]] = []

    /// - Parameters:
    ///   - uuid: 32 hex digits; sent in VMware's `uuid.bios` spelling ("01 23 ... ef-fe dc ...").
    public init(uuid: String, name: String, serviceURI: String = "vSPC.py", role: Role = .source) {
        self.uuid = uuid
        self.name = name
        self.serviceURI = serviceURI
        self.role = role
        super.init(decodes: true)
    }

    /// Connects and runs the opening; returns once the server has answered DO-PROXY (source) or PEER
    /// (destination) and has asked for the name.
    public static func connect(host: String = "127.0.0.1", port: Int, uuid: String, name: String,
                               serviceURI: String = "vSPC.py", role: Role = .source, tls: Bool = false,
                               group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                               waitForProxy: Bool = true, localHost: String? = nil) async throws -> SimulatedVM {
        let vm = SimulatedVM(uuid: uuid, name: name, serviceURI: serviceURI, role: role)
        try await vm.open(host: host, port: port, tls: tls, group: group, localHost: localHost)
        if waitForProxy {
            switch role {
            case .source:
                try await vm.wait("WILL-PROXY") { vm.proxyReply != nil || vm.closed }
                guard vm.proxyReply == VMwareCommand.willProxy else {
                    throw SimError(vm.closed ? "the server closed the connection" : "the server refused DO-PROXY")
                }
            case .destination:
                try await vm.wait("VMOTION-PEER-OK") {
                    vm.peerAccepted != nil || vm.unknownSuboptions.contains(VMwareCommand.vmotionPeer) || vm.closed
                }
            }
        }
        return vm
    }

    /// The VM's uuid in VMware's wire spelling.
    public static func wireUUID(_ hex32: String) -> String {
        let chars = Array(hex32.lowercased())
        var parts: [String] = []
        for i in stride(from: 0, to: 32, by: 2) { parts.append(String(chars[i..<i + 2])) }
        return parts[0..<8].joined(separator: " ") + "-" + parts[8..<16].joined(separator: " ")
    }

    override func didOpen() {
        write(raw: TelnetEncoder.negotiate(.will, TelnetOption.authentication))
    }

    override func handle(_ event: TelnetEvent) {
        switch event {
        case .negotiate(.will, let option):
            if [TelnetOption.binary, TelnetOption.suppressGoAhead, TelnetOption.echo].contains(option) {
                write(raw: TelnetEncoder.negotiate(.do, option))
            }
        case .negotiate(.do, let option):
            if option == TelnetOption.vmwareExt {
                var out = TelnetEncoder.negotiate(.will, option)
                out += VMwareCommand.message(VMwareCommand.knownSuboptions1, Self.esxiKnownSuboptions)
                switch role {
                case .source:
                    out += VMwareCommand.message(VMwareCommand.doProxy, [UInt8(ascii: "S")] + Array(serviceURI.utf8))
                case .destination(let sequence, let secret):
                    out += VMwareCommand.message(VMwareCommand.vmotionPeer, sequence + secret)
                }
                write(raw: out)
            } else if option == TelnetOption.binary || option == TelnetOption.suppressGoAhead {
                write(raw: TelnetEncoder.negotiate(.will, option))
            } else {
                write(raw: TelnetEncoder.negotiate(.wont, option))
            }
        case .subnegotiation(TelnetOption.vmwareExt, let payload):
            guard let command = payload.first else { return }
            let body = Array(payload.dropFirst())
            lock.lock()
            vmwareMessages.append(payload)
            switch command {
            case VMwareCommand.knownSuboptions2: knownSuboptions2 = body
            case VMwareCommand.willProxy, VMwareCommand.wontProxy: proxyAnswer = command
            case VMwareCommand.vmotionGoahead: goahead = body
            case VMwareCommand.vmotionNotNow: notNow = body
            case VMwareCommand.vmotionPeerOK: peerOK = body
            case VMwareCommand.unknownSuboptionRcvd2: unknownCodes.append(contentsOf: body)
            default: break
            }
            let currentName = name
            lock.unlock()
            switch command {
            case VMwareCommand.getVMVCUUID:
                write(raw: VMwareCommand.message(VMwareCommand.vmVCUUID, Array(Self.wireUUID(uuid).utf8)))
            case VMwareCommand.getVMName:
                write(raw: VMwareCommand.message(VMwareCommand.vmName, Array(currentName.utf8))
                    + TelnetEncoder.negotiate(.will, TelnetOption.comPort))
            default:
                break
            }
        default:
            break
        }
    }

    public var proxyReply: UInt8? { lock.lock(); defer { lock.unlock() }; return proxyAnswer }
    public var peerAccepted: [UInt8]? { lock.lock(); defer { lock.unlock() }; return peerOK }
    public var unknownSuboptions: [UInt8] { lock.lock(); defer { lock.unlock() }; return unknownCodes }
    public var knownSuboptions: [UInt8]? { lock.lock(); defer { lock.unlock() }; return knownSuboptions2 }
    /// Every VMware message received (sub-command byte first), un-escaped.
    public var messages: [[UInt8]] { lock.lock(); defer { lock.unlock() }; return vmwareMessages }

    /// Serial output of the VM (people see it on the VM's port).
    public func output(_ bytes: [UInt8]) { send(bytes) }
    public func output(_ text: String) { send(Array(text.utf8)) }

    /// Renames the VM (ESXi sends VM-NAME again).
    public func rename(_ newName: String) {
        lock.lock()
        name = newName
        lock.unlock()
        write(raw: VMwareCommand.message(VMwareCommand.vmName, Array(newName.utf8)))
    }

    /// Sends VMOTION-BEGIN and waits for GOAHEAD or NOTNOW.
    public func beginVMotion(sequence: [UInt8], timeout: Double = 10) async throws -> VMotionReply {
        lock.withLock {
            goahead = nil
            notNow = nil
        }
        write(raw: VMwareCommand.message(VMwareCommand.vmotionBegin, sequence))
        var reply: VMotionReply?
        try await wait("GOAHEAD or NOTNOW", timeout: timeout) {
            lock.lock(); defer { lock.unlock() }
            if let g = goahead {
                guard g.count >= sequence.count, Array(g.prefix(sequence.count)) == sequence else { return false }
                reply = .goahead(secret: Array(g.dropFirst(sequence.count)))
            } else if let n = notNow, n == sequence {
                reply = .notNow
            }
            return reply != nil
        }
        return reply!
    }

    public func abortVMotion() {
        write(raw: VMwareCommand.message(VMwareCommand.vmotionAbort))
    }

    public func completeVMotion(sequence: [UInt8]) {
        write(raw: VMwareCommand.message(VMwareCommand.vmotionComplete, sequence))
    }

    /// A whole vMotion as ESXi performs it: BEGIN on this (source) connection, the destination connects with
    /// PEER, sends COMPLETE, and the source closes. Returns the destination, which now carries the console.
    /// `host`/`port`: the destination's concentrator (another daemon's address for a vMotion across daemons).
    /// `duringWindow` runs once the destination's PEER is accepted and before COMPLETE: the source still carries
    /// the console then (e.g. it prints).
    public func migrate(to host: String = "127.0.0.1", port: Int, sequence: [UInt8]? = nil, tls: Bool = false,
                        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton, timeout: Double = 10,
                        duringWindow: (@Sendable (SimulatedVM, SimulatedVM) async throws -> Void)? = nil) async throws -> SimulatedVM {
        var rng = SystemRandomNumberGenerator()
        let seq = sequence ?? (0..<4).map { _ in UInt8.random(in: 0...255, using: &rng) }
        guard case .goahead(let secret) = try await beginVMotion(sequence: seq, timeout: timeout) else {
            throw SimError("the server answered VMOTION-NOTNOW")
        }
        let destination = try await SimulatedVM.connect(host: host, port: port, uuid: uuid, name: name,
                                                        serviceURI: serviceURI,
                                                        role: .destination(sequence: seq, secret: secret),
                                                        tls: tls, group: group)
        guard destination.peerAccepted == seq else {
            destination.close()
            throw SimError("the server rejected VMOTION-PEER")
        }
        do {
            try await destination.wait("the uuid request", timeout: timeout) {
                destination.closed || destination.messages.contains { $0.first == VMwareCommand.getVMName }
            }
            guard !destination.closed else { throw SimError("the server closed the destination before COMPLETE") }
            try await duringWindow?(self, destination)
        } catch {
            destination.close()
            throw error
        }
        destination.completeVMotion(sequence: seq)
        close()
        return destination
    }
}
