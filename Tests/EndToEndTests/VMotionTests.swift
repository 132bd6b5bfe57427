import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// End to end: vMotion handoffs and several serial ports per VM, against the real vspcd binary.
final class VMotionTests: DaemonTestCase {
    // MARK: - helpers

    /// VMware sub-command codes, spelled out so the tests do not lean on the code under test.
    enum Code {
        static let unknownSuboptionRcvd2: UInt8 = 0x03
        static let goahead: UInt8 = 0x29
        static let notNow: UInt8 = 0x2B
        static let peer: UInt8 = 0x2C
        static let peerOK: UInt8 = 0x2D
        static let complete: UInt8 = 0x2E
        static let willProxy: UInt8 = 0x47
        static let wontProxy: UInt8 = 0x49
    }

    /// 0xFF doubled (our own encoder, independent of the daemon's).
    func iacDoubled(_ bytes: [UInt8]) -> [UInt8] {
        bytes.flatMap { $0 == 0xFF ? [0xFF, 0xFF] : [$0] }
    }

    /// `IAC SB 232 <command> <payload, 0xFF doubled> IAC SE`, as expected on the wire.
    func wireMessage(_ command: UInt8, _ payload: [UInt8] = []) -> [UInt8] {
        [0xFF, 0xFA, 0xE8, command] + iacDoubled(payload) + [0xFF, 0xF0]
    }

    /// The VMware subnegotiations (IAC SB 232 ... IAC SE, as raw wire bytes) for `command` found in `raw`.
    func wireFrames(_ raw: [UInt8], command: UInt8) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var i = 0
        while i + 3 < raw.count {
            guard raw[i] == 0xFF, raw[i + 1] == 0xFA, raw[i + 2] == 0xE8 else { i += 1; continue }
            var j = i + 3
            var end: Int?
            while j + 1 < raw.count {
                if raw[j] == 0xFF {
                    if raw[j + 1] == 0xFF { j += 2; continue }
                    if raw[j + 1] == 0xF0 { end = j + 1 }
                    break
                }
                j += 1
            }
            guard let end else { i += 3; continue }
            if raw[i + 3] == command { frames.append(Array(raw[i...end])) }
            i = end + 1
        }
        return frames
    }

    func randomSequence() -> [UInt8] {
        (0..<4).map { _ in UInt8.random(in: 0...255) }
    }

    func info(_ daemon: Daemon, _ uuid: String, label: String = "") async throws -> ConsoleInfo? {
        try await daemon.list().first { $0.uuid == uuid && $0.label == label }
    }

    /// True if `kinds` contains `wanted` in this order (other kinds may come between).
    func inOrder(_ kinds: [String], _ wanted: [String]) -> Bool {
        var rest = wanted[...]
        for k in kinds where k == rest.first { rest.removeFirst() }
        return rest.isEmpty
    }

    /// A VM with one telnet client attached to its port.
    func vmWithClient(_ daemon: Daemon, _ uuid: String, name: String, serviceURI: String = "vSPC.py",
                              label: String = "") async throws -> (SimulatedVM, SimulatedClient, Int) {
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: name, serviceURI: serviceURI)
        let port = try await daemon.port(of: uuid, label: label)
        let client = try await SimulatedClient.connect(port: port)
        try await daemon.waitForList("a client on \(name)") { $0.first { $0.uuid == uuid && $0.label == label }?.clients == 1 }
        return (vm, client, port)
    }

    /// A vMotion destination for `uuid` that must be accepted.
    func destination(_ daemon: Daemon, _ uuid: String, name: String, sequence: [UInt8],
                             secret: [UInt8]) async throws -> SimulatedVM {
        let dest = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: name,
                                                 role: .destination(sequence: sequence, secret: secret))
        guard dest.peerAccepted == sequence else {
            dest.close()
            throw SimError("VMOTION-PEER was not accepted; messages \(dest.messages)")
        }
        return dest
    }

    func goahead(_ vm: SimulatedVM, _ sequence: [UInt8]) async throws -> [UInt8] {
        let reply = try await vm.beginVMotion(sequence: sequence)
        guard case .goahead(let secret) = reply else { throw SimError("expected VMOTION-GOAHEAD, got \(reply)") }
        return secret
    }

    // MARK: - 1. a successful migration

    func testMigrationWithAttachedClientDeliversEveryByteOnceAndEscapesIAC() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(101)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "mover")
        defer { source.close(); client.close() }
        let before = try await info(daemon, uuid)
        XCTAssertEqual(before?.connected, true)

        let counting = (0x20...0x7E).map { UInt8($0) }
        let split = 0x40 - 0x20
        for b in counting[..<split] { source.output([b]) }

        // BEGIN -> GOAHEAD(sequence + 8-byte secret), 0xFF doubled on the wire.
        let seq: [UInt8] = [0x76, 0x19, 0xFF, 0xE9]
        let secret = try await goahead(source, seq)
        XCTAssertEqual(secret.count, 8)
        XCTAssertEqual(source.messages.filter { $0.first == Code.goahead }, [[Code.goahead] + seq + secret])
        let goaheadWire = wireFrames(source.raw, command: Code.goahead)
        XCTAssertEqual(goaheadWire, [[0xFF, 0xFA, 0xE8, 0x29, 0x76, 0x19, 0xFF, 0xFF, 0xE9] + iacDoubled(secret) + [0xFF, 0xF0]])
        let pending = try await info(daemon, uuid)
        XCTAssertEqual(pending?.migrating, true)

        // The destination: PEER -> PEER-OK carrying the sequence only.
        let dest = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "mover",
                                                 role: .destination(sequence: seq, secret: secret))
        defer { dest.close() }
        XCTAssertEqual(dest.peerAccepted, seq)
        XCTAssertEqual(dest.messages.filter { $0.first == Code.peerOK }, [[Code.peerOK] + seq])
        XCTAssertEqual(wireFrames(dest.raw, command: Code.peerOK), [[0xFF, 0xFA, 0xE8, 0x2D, 0x76, 0x19, 0xFF, 0xFF, 0xE9, 0xFF, 0xF0]])

        // COMPLETE on the destination, the source closes (as ESXi does), the destination carries on counting.
        dest.completeVMotion(sequence: seq)
        source.close()
        for b in counting[split...] { dest.output([b]) }

        try await client.waitForData(count: counting.count)
        try await barrier(dest, client)
        XCTAssertEqual(client.data, counting, "every byte exactly once, in order")
        XCTAssertFalse(client.closed, "the client stays attached through the migration")
        XCTAssertFalse(dest.closed)
        XCTAssertTrue(dest.unknownSuboptions.isEmpty, "COMPLETE was rejected: \(dest.messages)")

        let after = try await daemon.waitForList("the console on its destination") {
            $0.first { $0.uuid == uuid }.map { $0.connected && !$0.migrating && $0.peer != before?.peer } ?? false
        }
        let vm = after.first { $0.uuid == uuid }!
        XCTAssertEqual(vm.port, port)
        XCTAssertEqual(vm.clients, 1)
        let listed = try Daemon.run("vspc", ["list", "--admin", "127.0.0.1:\(daemon.adminPort)"])
        XCTAssertEqual(listed.status, 0, listed.err)
        XCTAssertEqual(listed.out, "mover:\(UUIDSpelling.classic(uuid)):\(port)\n")
    }

    // MARK: - 2. client input during the window

    func testInputDuringWindowIsHeldAndDeliveredToDestinationOnce() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(102)
        let (source, client, _) = try await vmWithClient(daemon, uuid, name: "typist")
        defer { source.close(); client.close() }

        let early: [UInt8] = Array("before\r".utf8) + [0xFF, 0x00]
        client.send(early)
        try await source.waitForData(count: early.count)
        XCTAssertEqual(source.takeData(), early, "input typed before BEGIN reaches the source")

        let seq = randomSequence()
        let secret = try await goahead(source, seq)
        let during1: [UInt8] = Array("during-1 ".utf8) + [0xFF, 0x11, 0x00]
        client.send(during1)
        try await barrier(client, source)
        XCTAssertEqual(source.data, [], "input typed after GOAHEAD must not reach the source")

        let dest = try await destination(daemon, uuid, name: "typist", sequence: seq, secret: secret)
        defer { dest.close() }
        let during2 = Array(" during-2".utf8)
        client.send(during2)
        try await barrier(client, source, dest)
        XCTAssertEqual(source.data, [])
        XCTAssertEqual(dest.data, [], "input is held until COMPLETE")

        dest.completeVMotion(sequence: seq)
        source.close()
        let after = Array(" after".utf8)
        client.send(after)
        let expected = during1 + during2 + after
        try await dest.waitForData(count: expected.count)
        try await barrier(client, dest)
        XCTAssertEqual(dest.data, expected, "held input exactly once, in order, then live input")
        XCTAssertEqual(source.data, [])
    }

    // MARK: - 3. ABORT

    func testAbortDeliversHeldInputToSourceAndAllowsAnotherMigration() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(103)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "aborter")
        defer { source.close(); client.close() }

        _ = try await goahead(source, [0x01, 0x02, 0x03, 0x04])
        let held: [UInt8] = Array("held ".utf8) + [0xFF, 0x41]
        client.send(held)
        try await barrier(client, source)
        XCTAssertEqual(source.data, [])

        source.abortVMotion()
        try await source.waitForData(count: held.count)
        try await barrier(client, source)
        XCTAssertEqual(source.takeData(), held, "held input reaches the source after ABORT, exactly once")
        try await daemon.waitForList("migration over") { $0.first { $0.uuid == uuid }?.migrating == false }

        source.output("still here\r\n")
        try await client.waitForData(count: 12)
        XCTAssertEqual(client.takeData(), Array("still here\r\n".utf8))
        client.send(Array("x".utf8))
        try await source.waitForData(count: 1)
        XCTAssertEqual(source.takeData(), Array("x".utf8))

        // A new migration afterwards succeeds.
        let dest = try await source.migrate(port: daemon.proxyPort)
        defer { dest.close() }
        dest.output("moved\r\n")
        try await client.waitForData(count: 7)
        XCTAssertEqual(client.data, Array("moved\r\n".utf8))
        let vm = try await daemon.waitForList("connected via destination") { $0.first { $0.uuid == uuid }.map { $0.connected && !$0.migrating } ?? false }
        XCTAssertEqual(vm.first { $0.uuid == uuid }?.port, port)
        try await waitForEvents(daemon, uuid: uuid, "vmotion-abort then vmotion-complete") {
            self.inOrder($0.map(\.kind.rawValue), ["vmotion-abort", "vmotion-complete"])
        }
    }

    // MARK: - 4. NOTNOW

    func testSecondBeginWhilePendingGetsNotNowWithSequenceOnly() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(104)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "eager")
        defer { source.close(); client.close() }

        let first: [UInt8] = [0x10, 0x20, 0x30, 0x40]
        let secret = try await goahead(source, first)
        // The destination has joined: the migration is under way, so another BEGIN cannot restart it.
        let dest = try await destination(daemon, uuid, name: "eager", sequence: first, secret: secret)
        defer { dest.close() }
        let second: [UInt8] = [0x05, 0xFF, 0x06, 0x07]
        let reply = try await source.beginVMotion(sequence: second)
        XCTAssertEqual(reply, .notNow)
        XCTAssertEqual(source.messages.filter { $0.first == Code.notNow }, [[Code.notNow] + second])
        XCTAssertEqual(wireFrames(source.raw, command: Code.notNow), [[0xFF, 0xFA, 0xE8, 0x2B, 0x05, 0xFF, 0xFF, 0x06, 0x07, 0xFF, 0xF0]])

        // The VM keeps working.
        XCTAssertFalse(source.closed)
        source.output("alive\r\n")
        try await client.waitForData(count: 7)
        XCTAssertEqual(client.takeData(), Array("alive\r\n".utf8))
        let listed = try await info(daemon, uuid)
        XCTAssertEqual(listed?.connected, true)

        // The first migration is still pending and completes.
        dest.completeVMotion(sequence: first)
        source.close()
        dest.output("arrived\r\n")
        try await client.waitForData(count: 9)
        XCTAssertEqual(client.data, Array("arrived\r\n".utf8))
        client.send(Array("in".utf8))
        try await dest.waitForData(count: 2)
        XCTAssertEqual(dest.data, Array("in".utf8))
        let final = try await info(daemon, uuid)
        XCTAssertEqual(final?.port, port)
        try await waitForEvents(daemon, uuid: uuid, "vmotion-notnow") { $0.contains { $0.kind == "vmotion-notnow" } }
    }

}
