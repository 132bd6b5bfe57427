import Foundation
import XCTest
@testable import VSPCCore

/// Three VMs' uuids (32 lowercase hex).
enum UUIDs {
    static let a = "0123456789abcdeffedcba9800000000"
    static let b = "11112222333344445555666677778888"
    static let c = "abcdef00112233445566778899aabbcc"
}

/// What an ESXi host sends on the proxy port, message by message.
enum ESXi {
    /// WILL AUTHENTICATION, DO BINARY, DO SGA, DO ECHO, WILL BINARY, WILL SGA, WILL VMWARE-EXT (as in the captures).
    static let options = Hex.bytes("FF FB 25 FF FD 00 FF FD 03 FF FD 01 FF FB 00 FF FB 03 FF FB E8")
    static let knownSuboptions1 = VMwareCommand.message(
        VMwareCommand.knownSuboptions1, [0, 1, 2, 3, 40, 41, 43, 44, 45, 46, 48, 70, 71, 73, 80, 81, 84, 85, 86, 87, 82, 83])

    /// DO-PROXY 'S' "vSPC.py" (with `?port=label` for a second serial port).
    static func doProxy(_ uri: String = "vSPC.py", label: String = "") -> [UInt8] {
        let text = label.isEmpty ? uri : "\(uri)?port=\(label)"
        return VMwareCommand.message(VMwareCommand.doProxy, [UInt8(ascii: "S")] + Array(text.utf8))
    }

    /// VM-VC-UUID in VMware's wire spelling, "01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00".
    static func vcUUID(_ hex32: String) -> [UInt8] {
        VMwareCommand.message(VMwareCommand.vmVCUUID, Array(wireSpelling(hex32).utf8))
    }

    static func name(_ name: String) -> [UInt8] { VMwareCommand.message(VMwareCommand.vmName, Array(name.utf8)) }
    static func begin(_ sequence: [UInt8]) -> [UInt8] { VMwareCommand.message(VMwareCommand.vmotionBegin, sequence) }
    static func peer(_ cookie: [UInt8]) -> [UInt8] { VMwareCommand.message(VMwareCommand.vmotionPeer, cookie) }
    static func complete(_ sequence: [UInt8]) -> [UInt8] { VMwareCommand.message(VMwareCommand.vmotionComplete, sequence) }
    static let abort = VMwareCommand.message(VMwareCommand.vmotionAbort)

    static func wireSpelling(_ hex32: String) -> String {
        let digits = Array(hex32)
        let pairs = stride(from: 0, to: 32, by: 2).map { String(digits[$0..<$0 + 2]) }
        return pairs[0..<8].joined(separator: " ") + "-" + pairs[8..<16].joined(separator: " ")
    }
}

/// What the server is expected to write, spelled out independently of the encoder under test.
enum Wire {
    static func iacDoubled(_ bytes: [UInt8]) -> [UInt8] { bytes.flatMap { $0 == 0xFF ? [0xFF, 0xFF] : [$0] } }

    /// `IAC SB 232 <command> <payload, 0xFF doubled> IAC SE`.
    static func vmware(_ command: UInt8, _ payload: [UInt8] = []) -> [UInt8] {
        [0xFF, 0xFA, 0xE8, command] + iacDoubled(payload) + [0xFF, 0xF0]
    }

    /// WILL BINARY, WILL SGA, WILL ECHO, DO BINARY, DO SGA, DO VMWARE-EXT.
    static let proxyOpening = Hex.bytes("FF FB 00 FF FB 03 FF FB 01 FF FD 00 FF FD 03 FF FD E8")
    /// WILL BINARY, WILL SGA, WILL ECHO, DO BINARY, DO SGA.
    static let clientOpening = Hex.bytes("FF FB 00 FF FB 03 FF FB 01 FF FD 00 FF FD 03")

    static let goahead: UInt8 = 0x29
    static let notNow: UInt8 = 0x2B
    static let peerOK: UInt8 = 0x2D
    static let unknownSuboptionRcvd2: UInt8 = 0x03
    /// UNKNOWN-SUBOPTION-RCVD-2 naming VMOTION-PEER / VMOTION-COMPLETE: the refusal of those.
    static let peerRefused = vmware(unknownSuboptionRcvd2, [0x2C])
    static let completeRefused = vmware(unknownSuboptionRcvd2, [0x2E])
}

/// The answer to one admin request: the JSON line decoded, and the raw bytes after it.
struct AdminReply {
    var id: ConnectionID
    var response: AdminResponse?
    var rest: [UInt8]
}

extension ConcentratorHarness {
    // MARK: VMs

    @discardableResult
    func connectVM(peer: String = "10.0.0.1:900") -> ConnectionID {
        let id = newConnection(.vm)
        send(.vmConnected(id, peer: peer))
        return id
    }

    @discardableResult
    func vm(_ id: ConnectionID, says bytes: [UInt8]) -> [ConcentratorAction] { send(.vmBytes(id, bytes)) }

    /// The telnet options and KNOWN-SUBOPTIONS-1 of an ESXi host.
    func negotiate(_ id: ConnectionID) {
        vm(id, says: ESXi.options)
        vm(id, says: ESXi.knownSuboptions1)
    }

    /// A fresh power-on: opening, DO-PROXY, uuid, name. With the default answers the port is bound and committed.
    @discardableResult
    func bringUpVM(_ uuid: String = UUIDs.a, name: String = "web01", label: String = "",
                   peer: String = "10.0.0.1:900") -> ConnectionID {
        let id = connectVM(peer: peer)
        negotiate(id)
        vm(id, says: ESXi.doProxy(label: label))
        vm(id, says: ESXi.vcUUID(uuid))
        vm(id, says: ESXi.name(name))
        return id
    }

    /// A vMotion destination: opening, VMOTION-PEER (no DO-PROXY), then its uuid and name on request.
    @discardableResult
    func connectDestination(cookie: [UInt8], uuid: String = UUIDs.a, name: String = "web01",
                            peer: String = "10.0.0.2:902") -> ConnectionID {
        let id = connectVM(peer: peer)
        negotiate(id)
        vm(id, says: ESXi.peer(cookie))
        vm(id, says: ESXi.vcUUID(uuid))
        vm(id, says: ESXi.name(name))
        return id
    }

    // MARK: people

    /// A person connecting to the console's current listener.
    @discardableResult
    func connectClient(_ key: ConsoleKey, peer: String = "192.0.2.7:40001") -> ConnectionID {
        let id = newConnection(.client)
        guard let listener = listeners[key] else {
            XCTFail("\(key) has no listener")
            return id
        }
        send(.clientConnected(id, listener: listener.ref, peer: peer))
        return id
    }

    @discardableResult
    func client(_ id: ConnectionID, types bytes: [UInt8]) -> [ConcentratorAction] { send(.clientBytes(id, bytes)) }

    // MARK: admin

    func admin(_ request: AdminRequest) -> AdminReply {
        let line = try! JSONEncoder().encode(request)
        return adminRaw(Array(line))
    }

    /// Connects an admin client, sends one line (without its newline) and splits what came back.
    func adminRaw(_ line: [UInt8]) -> AdminReply {
        let id = newConnection(.admin)
        send(.adminConnected(id))
        send(.adminLine(id, line))
        let out = takeOutput(id)
        guard let newline = out.firstIndex(of: 0x0A) else { return AdminReply(id: id, response: nil, rest: out) }
        let response = try? JSONDecoder().decode(AdminResponse.self, from: Data(out[..<newline]))
        return AdminReply(id: id, response: response, rest: Array(out[(newline + 1)...]))
    }

    /// The consoles `vspc list` shows.
    func list() -> [ConsoleInfo] {
        let reply = admin(AdminRequest(command: "list"))
        XCTAssertEqual(reply.response?.ok, true)
        return reply.response?.vms ?? []
    }

    func status() -> [String: String] {
        admin(AdminRequest(command: "status")).response?.status?.fields ?? [:]
    }
}

extension StatusCounters {
    /// The counters by their JSON key, as scripts read them.
    var fields: [String: String] {
        ["consoles": consoles, "connected": connected, "clients": clients, "migrating": migrating,
         "freePorts": freePorts, "descriptors": descriptors, "descriptorLimit": descriptorLimit, "startedAt": startedAt]
    }
}

/// The secret the machine draws for its first GOAHEAD from `SplitMix64(seed:)`: one byte per `next()`.
func expectedSecret(seed: UInt64, skipping draws: Int = 0) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    for _ in 0..<draws { _ = rng.next() }
    return (0..<ConcentratorStateMachine.secretLength).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
}

/// The first seed whose first secret contains 0xFF, so GOAHEAD must be escaped on the wire.
func seedWithIACInSecret() -> UInt64 {
    var seed: UInt64 = 1
    while !expectedSecret(seed: seed).contains(0xFF) { seed += 1 }
    return seed
}
