import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// End to end: vMotion handoffs and several serial ports per VM, against the real vspcd binary.
final class VMotionTests: XCTestCase {
    private var daemons: [Daemon] = []

    override func tearDown() async throws {
        if let run = testRun, run.failureCount + run.unexpectedExceptionCount > 0 {
            for daemon in daemons {
                let tail = daemon.log.split(separator: "\n").suffix(60).joined(separator: "\n")
                print("--- vspcd log of \(name) (last 60 lines) ---\n\(tail)")
            }
        }
        daemons.forEach { $0.cleanup() }
        daemons = []
    }

    /// Starts a daemon that `tearDown` cleans up.
    private func startDaemon(portRangeSize: Int = 200, _ extra: [String] = []) async throws -> Daemon {
        let daemon = try Daemon(portRangeSize: portRangeSize, extraArguments: extra)
        daemons.append(daemon)
        try await daemon.start()
        return daemon
    }

    // MARK: - helpers

    /// VMware sub-command codes, spelled out so the tests do not lean on the code under test.
    private enum Code {
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
    private func iacDoubled(_ bytes: [UInt8]) -> [UInt8] {
        bytes.flatMap { $0 == 0xFF ? [0xFF, 0xFF] : [$0] }
    }

    /// `IAC SB 232 <command> <payload, 0xFF doubled> IAC SE`, as expected on the wire.
    private func wireMessage(_ command: UInt8, _ payload: [UInt8] = []) -> [UInt8] {
        [0xFF, 0xFA, 0xE8, command] + iacDoubled(payload) + [0xFF, 0xF0]
    }

    /// The VMware subnegotiations (IAC SB 232 ... IAC SE, as raw wire bytes) for `command` found in `raw`.
    private func wireFrames(_ raw: [UInt8], command: UInt8) -> [[UInt8]] {
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

    private func randomSequence() -> [UInt8] {
        (0..<4).map { _ in UInt8.random(in: 0...255) }
    }

    private func info(_ daemon: Daemon, _ uuid: String, label: String = "") async throws -> ConsoleInfo? {
        try await daemon.list().first { $0.uuid == uuid && $0.label == label }
    }

    /// Gives the daemon time to act on something that must NOT happen (a negative check, not a speed check).
    private func settle(_ ms: UInt64 = 300) async throws {
        try await Task.sleep(nanoseconds: ms * 1_000_000)
    }

    /// Polls the event table (written asynchronously) until `condition` holds.
    @discardableResult
    private func waitForEvents(_ daemon: Daemon, uuid: String, _ what: String, timeout: Double = 15,
                               _ condition: ([EventRecord]) -> Bool) async throws -> [EventRecord] {
        let deadline = Date().addingTimeInterval(timeout)
        var events: [EventRecord] = []
        while true {
            if let store = try? Store(path: daemon.dbPath, readOnly: true), let e = try? store.events(uuid: uuid) {
                events = e
                if condition(events) { return events }
            }
            if Date() > deadline {
                throw SimError("timed out waiting for \(what); events: \(events.map { "\($0.kind)[\($0.detail ?? "")]" })")
            }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// True if `kinds` contains `wanted` in this order (other kinds may come between).
    private func inOrder(_ kinds: [String], _ wanted: [String]) -> Bool {
        var rest = wanted[...]
        for k in kinds where k == rest.first { rest.removeFirst() }
        return rest.isEmpty
    }

    /// A VM with one telnet client attached to its port.
    private func vmWithClient(_ daemon: Daemon, _ uuid: String, name: String, serviceURI: String = "vSPC.py",
                              label: String = "") async throws -> (SimulatedVM, SimulatedClient, Int) {
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: name, serviceURI: serviceURI)
        let port = try await daemon.port(of: uuid, label: label)
        let client = try await SimulatedClient.connect(port: port)
        try await daemon.waitForList("a client on \(name)") { $0.first { $0.uuid == uuid && $0.label == label }?.clients == 1 }
        return (vm, client, port)
    }

    /// A vMotion destination for `uuid` that must be accepted.
    private func destination(_ daemon: Daemon, _ uuid: String, name: String, sequence: [UInt8],
                             secret: [UInt8]) async throws -> SimulatedVM {
        let dest = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: name,
                                                 role: .destination(sequence: sequence, secret: secret))
        guard dest.peerAccepted == sequence else {
            dest.close()
            throw SimError("VMOTION-PEER was not accepted; messages \(dest.messages)")
        }
        return dest
    }

    private func goahead(_ vm: SimulatedVM, _ sequence: [UInt8]) async throws -> [UInt8] {
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
        try await settle(200)
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
        try await settle()
        XCTAssertEqual(source.data, [], "input typed after GOAHEAD must not reach the source")

        let dest = try await destination(daemon, uuid, name: "typist", sequence: seq, secret: secret)
        defer { dest.close() }
        let during2 = Array(" during-2".utf8)
        client.send(during2)
        try await settle()
        XCTAssertEqual(source.data, [])
        XCTAssertEqual(dest.data, [], "input is held until COMPLETE")

        dest.completeVMotion(sequence: seq)
        source.close()
        let after = Array(" after".utf8)
        client.send(after)
        let expected = during1 + during2 + after
        try await dest.waitForData(count: expected.count)
        try await settle(200)
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
        try await settle()
        XCTAssertEqual(source.data, [])

        source.abortVMotion()
        try await source.waitForData(count: held.count)
        try await settle(200)
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
            self.inOrder($0.map(\.kind), ["vmotion-abort", "vmotion-complete"])
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

    // MARK: - 5. wrong and replayed cookies

    func testPeerWithWrongCookieIsRejectedAndReplayAfterCompleteToo() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(105)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "cookie")
        defer { source.close(); client.close() }
        let sourcePeer = try await info(daemon, uuid)?.peer

        let seq = randomSequence()
        let secret = try await goahead(source, seq)
        var wrongSecret = secret
        wrongSecret[7] ^= 0x01

        let wrong = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "cookie",
                                                  role: .destination(sequence: seq, secret: wrongSecret))
        defer { wrong.close() }
        XCTAssertNil(wrong.peerAccepted)
        XCTAssertEqual(wireFrames(wrong.raw, command: Code.unknownSuboptionRcvd2), [[0xFF, 0xFA, 0xE8, 0x03, 0x2C, 0xFF, 0xF0]])
        // The rejected connection has answered GET-VM-VC-UUID / GET-VM-NAME by now; it must not take over the VM.
        try await settle()
        XCTAssertFalse(source.closed, "a rejected VMOTION-PEER displaced the VM's connection")
        var listed = try await info(daemon, uuid)
        XCTAssertEqual(listed?.connected, true)
        XCTAssertEqual(listed?.migrating, true, "the pending migration must survive a wrong cookie")
        XCTAssertEqual(listed?.peer, sourcePeer)
        wrong.close()

        // The right cookie completes the migration.
        let dest = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "cookie",
                                                 role: .destination(sequence: seq, secret: secret))
        defer { dest.close() }
        XCTAssertEqual(dest.peerAccepted, seq)
        dest.completeVMotion(sequence: seq)
        source.close()
        dest.output("on destination\r\n")
        try await client.waitForData(count: 16)
        XCTAssertEqual(client.takeData(), Array("on destination\r\n".utf8))
        listed = try await daemon.waitForList("completed") { $0.first { $0.uuid == uuid }.map { $0.connected && !$0.migrating } ?? false }
            .first { $0.uuid == uuid }
        let destPeer = listed?.peer
        XCTAssertNotEqual(destPeer, sourcePeer)

        // Replaying the used cookie after COMPLETE is rejected, and the VM keeps its (destination) connection.
        let replay = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "cookie",
                                                   role: .destination(sequence: seq, secret: secret))
        defer { replay.close() }
        XCTAssertNil(replay.peerAccepted)
        XCTAssertEqual(wireFrames(replay.raw, command: Code.unknownSuboptionRcvd2), [[0xFF, 0xFA, 0xE8, 0x03, 0x2C, 0xFF, 0xF0]])
        try await settle()
        XCTAssertFalse(dest.closed, "a replayed VMOTION-PEER displaced the VM's connection")
        listed = try await info(daemon, uuid)
        XCTAssertEqual(listed?.connected, true)
        XCTAssertEqual(listed?.peer, destPeer)
        XCTAssertEqual(listed?.port, port)
        dest.output("still\r\n")
        try await client.waitForData(count: 7)
        XCTAssertEqual(client.data, Array("still\r\n".utf8))
        client.send(Array("k".utf8))
        try await dest.waitForData(count: 1)
        XCTAssertEqual(dest.data, Array("k".utf8))
        XCTAssertEqual(replay.data, [])
        try await waitForEvents(daemon, uuid: uuid, "two vmotion-peer-rejected") {
            $0.filter { $0.kind == "vmotion-peer-rejected" }.count >= 2
        }
    }

    // MARK: - 6. COMPLETE without PEER

    func testCompleteWithoutPeerIsRejectedAndChangesNothing() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(106)
        let (vm, client, port) = try await vmWithClient(daemon, uuid, name: "steady")
        defer { vm.close(); client.close() }
        let before = try await info(daemon, uuid)

        // A fresh connection, no migration pending.
        let stranger = try await RawPeer.connect(port: daemon.proxyPort)
        defer { stranger.close() }
        let seq: [UInt8] = [0xAA, 0xBB, 0xCC, 0xDD]
        stranger.write(raw: [0xFF, 0xFB, 0xE8] + VMwareCommand.message(0, SimulatedVM.esxiKnownSuboptions)
            + VMwareCommand.message(Code.complete, seq))
        try await stranger.wait("UNKNOWN-SUBOPTION-RCVD-2 for COMPLETE") { !self.wireFrames(stranger.raw, command: Code.unknownSuboptionRcvd2).isEmpty }
        XCTAssertEqual(wireFrames(stranger.raw, command: Code.unknownSuboptionRcvd2), [[0xFF, 0xFA, 0xE8, 0x03, 0x2E, 0xFF, 0xF0]])

        // A fresh connection while a migration is pending, with the right sequence.
        let secret = try await goahead(vm, seq)
        let stranger2 = try await RawPeer.connect(port: daemon.proxyPort)
        defer { stranger2.close() }
        stranger2.write(raw: [0xFF, 0xFB, 0xE8] + VMwareCommand.message(0, SimulatedVM.esxiKnownSuboptions)
            + VMwareCommand.message(Code.complete, seq))
        try await stranger2.wait("UNKNOWN-SUBOPTION-RCVD-2 for COMPLETE") { !self.wireFrames(stranger2.raw, command: Code.unknownSuboptionRcvd2).isEmpty }
        XCTAssertEqual(wireFrames(stranger2.raw, command: Code.unknownSuboptionRcvd2), [[0xFF, 0xFA, 0xE8, 0x03, 0x2E, 0xFF, 0xF0]])

        // The VM's own connection sending COMPLETE is rejected the same way.
        vm.completeVMotion(sequence: seq)
        try await vm.wait("UNKNOWN-SUBOPTION-RCVD-2 for COMPLETE") { vm.unknownSuboptions.contains(Code.complete) }
        XCTAssertEqual(wireFrames(vm.raw, command: Code.unknownSuboptionRcvd2), [[0xFF, 0xFA, 0xE8, 0x03, 0x2E, 0xFF, 0xF0]])

        try await settle()
        XCTAssertFalse(vm.closed, "the VM keeps its connection")
        let during = try await info(daemon, uuid)
        XCTAssertEqual(during?.connected, true)
        XCTAssertEqual(during?.peer, before?.peer)
        XCTAssertEqual(during?.port, port)
        XCTAssertEqual(during?.migrating, true, "the pending migration is untouched")
        let all = try await daemon.list()
        XCTAssertEqual(all.count, 1)

        // The pending migration still completes properly.
        let dest = try await destination(daemon, uuid, name: "steady", sequence: seq, secret: secret)
        defer { dest.close() }
        dest.completeVMotion(sequence: seq)
        vm.close()
        dest.output("ok\r\n")
        try await client.waitForData(count: 4)
        XCTAssertEqual(client.data, Array("ok\r\n".utf8))
        try await waitForEvents(daemon, uuid: uuid, "vmotion-complete-rejected") {
            $0.contains { $0.kind == "vmotion-complete-rejected" } && $0.contains { $0.kind == "vmotion-complete" }
        }
    }

    // MARK: - 7. PEER before any GOAHEAD

    func testPeerBeforeGoaheadIsRejectedAndDaemonKeepsServing() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(107)
        let (vm, client, port) = try await vmWithClient(daemon, uuid, name: "early-bird")
        defer { vm.close(); client.close() }
        let before = try await info(daemon, uuid)

        let madeUpSeq: [UInt8] = [0x11, 0x22, 0x33, 0x44]
        let madeUpSecret: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let intruder = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "early-bird",
                                                     role: .destination(sequence: madeUpSeq, secret: madeUpSecret))
        defer { intruder.close() }
        XCTAssertNil(intruder.peerAccepted)
        XCTAssertEqual(wireFrames(intruder.raw, command: Code.unknownSuboptionRcvd2), [[0xFF, 0xFA, 0xE8, 0x03, 0x2C, 0xFF, 0xF0]])
        XCTAssertTrue(wireFrames(intruder.raw, command: Code.peerOK).isEmpty)

        try await settle()
        XCTAssertFalse(vm.closed, "a rejected VMOTION-PEER displaced the VM's connection")
        let after = try await info(daemon, uuid)
        XCTAssertEqual(after?.connected, true)
        XCTAssertEqual(after?.peer, before?.peer)
        XCTAssertEqual(after?.port, port)
        XCTAssertEqual(after?.migrating, false)
        vm.output("unchanged\r\n")
        try await client.waitForData(count: 11)
        XCTAssertEqual(client.takeData(), Array("unchanged\r\n".utf8))
        client.send(Array("q".utf8))
        try await vm.waitForData(count: 1)
        XCTAssertEqual(vm.takeData(), Array("q".utf8))
        XCTAssertEqual(intruder.data, [])

        // The daemon keeps serving: another VM connects, and this one migrates normally.
        let other = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(1070), name: "bystander")
        defer { other.close() }
        _ = try await daemon.port(of: other.uuid)
        let dest = try await vm.migrate(port: daemon.proxyPort, sequence: madeUpSeq)
        defer { dest.close() }
        dest.output("moved\r\n")
        try await client.waitForData(count: 7)
        XCTAssertEqual(client.data, Array("moved\r\n".utf8))
        try await waitForEvents(daemon, uuid: uuid, "vmotion-peer-rejected") { $0.contains { $0.kind == "vmotion-peer-rejected" } }
    }

    // MARK: - 8. the destination never arrives

    func testPendingMigrationExpiresHeldInputGoesToSourceAndVMCanMigrateAgain() async throws {
        let daemon = try await startDaemon(["--vmotion-timeout", "1"])
        let uuid = testUUID(108)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "stranded")
        defer { source.close(); client.close() }

        _ = try await goahead(source, [0x0A, 0x0B, 0x0C, 0x0D])
        let held: [UInt8] = Array("typed while waiting".utf8) + [0xFF]
        client.send(held)
        try await settle()
        XCTAssertEqual(source.data, [])

        try await Task.sleep(nanoseconds: 2_000_000_000)
        let events = try await waitForEvents(daemon, uuid: uuid, "vmotion-expired") { $0.contains { $0.kind == "vmotion-expired" } }
        XCTAssertTrue(inOrder(events.map(\.kind), ["vmotion-begin", "vmotion-goahead", "vmotion-expired"]), "\(events.map(\.kind))")
        try await source.waitForData(count: held.count)
        try await settle(200)
        XCTAssertEqual(source.takeData(), held, "held input goes to the source after expiry, exactly once")
        XCTAssertFalse(source.closed)
        let listed = try await info(daemon, uuid)
        XCTAssertEqual(listed?.migrating, false)
        XCTAssertEqual(listed?.connected, true)
        XCTAssertEqual(listed?.port, port)

        // The VM can migrate again.
        let reply = try await source.beginVMotion(sequence: [0x0E, 0x0F, 0x10, 0x11])
        guard case .goahead(let secret) = reply else { return XCTFail("a new BEGIN after expiry got \(reply)") }
        XCTAssertEqual(secret.count, 8)
        source.abortVMotion()
        source.output("fine\r\n")
        try await client.waitForData(count: 6)
        XCTAssertEqual(client.data, Array("fine\r\n".utf8))
    }

    // MARK: - 9. the source closes without ABORT and no destination comes

    func testSourceClosedWithoutAbortExpiresAndVMReconnectsFreshOnItsPort() async throws {
        let daemon = try await startDaemon(["--vmotion-timeout", "1"])
        let uuid = testUUID(109)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "vanished")
        defer { client.close() }

        _ = try await goahead(source, [0x21, 0x22, 0x23, 0x24])
        source.close()
        try await daemon.waitForList("VM down") { $0.first { $0.uuid == uuid }?.connected == false }
        XCTAssertFalse(client.closed)
        try await waitForEvents(daemon, uuid: uuid, "vmotion-expired") { $0.contains { $0.kind == "vmotion-expired" } }
        let down = try await daemon.waitForList("migration dropped") { $0.first { $0.uuid == uuid }?.migrating == false }
        XCTAssertEqual(down.first { $0.uuid == uuid }?.port, port)

        // The VM comes back with a fresh DO-PROXY and keeps its port.
        let fresh = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "vanished")
        defer { fresh.close() }
        XCTAssertEqual(fresh.proxyReply, Code.willProxy)
        let up = try await daemon.waitForList("VM up") { $0.first { $0.uuid == uuid }?.connected == true }
        XCTAssertEqual(up.first { $0.uuid == uuid }?.port, port)
        fresh.output("back\r\n")
        try await client.waitForData(count: 6)
        XCTAssertEqual(client.data, Array("back\r\n".utf8))
        client.send(Array("z".utf8))
        try await fresh.waitForData(count: 1)
        XCTAssertEqual(fresh.data, Array("z".utf8))

        let events = try await waitForEvents(daemon, uuid: uuid, "disconnect, expiry and reconnect") {
            self.inOrder($0.map(\.kind), ["vm-connect", "vmotion-begin", "vmotion-goahead", "vmotion-source-closed",
                                          "vmotion-expired", "vm-disconnect", "vm-connect"])
        }
        XCTAssertTrue(events.contains { $0.kind == "vm-disconnect" && ($0.detail ?? "").contains("vMotion") }, "\(events.map { "\($0.kind)[\($0.detail ?? "")]" })")

        // And it can migrate again.
        let dest = try await fresh.migrate(port: daemon.proxyPort)
        defer { dest.close() }
        dest.output("x")
        try await client.waitForData(count: 7)
    }

    func testSourceReconnectingAfreshDuringPendingMigrationDropsIt() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(1091)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "rebooter")
        defer { client.close() }
        let seq: [UInt8] = [0x31, 0x32, 0x33, 0x34]
        let secret = try await goahead(source, seq)
        client.send(Array("typed".utf8)) // held: a migration is pending
        try await settle()
        source.close()
        try await daemon.waitForList("VM down") { $0.first { $0.uuid == uuid }?.connected == false }
        let fresh = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "rebooter")
        defer { fresh.close() }
        // What was typed during the dropped migration reaches the VM once it is back.
        try await fresh.waitForData(count: 5)
        XCTAssertEqual(fresh.takeData(), Array("typed".utf8))
        XCTAssertTrue(source.data.isEmpty)
        let up = try await daemon.waitForList("VM up, migration dropped") {
            $0.first { $0.uuid == uuid }.map { $0.connected && !$0.migrating } ?? false
        }
        XCTAssertEqual(up.first { $0.uuid == uuid }?.port, port)
        let events = try await waitForEvents(daemon, uuid: uuid, "vmotion-expired") { $0.contains { $0.kind == "vmotion-expired" } }
        // The source closed with no destination: the migration ended then, not at the fresh reconnect.
        XCTAssertTrue(events.contains { $0.kind == "vmotion-expired" && ($0.detail ?? "").contains("source closed with no destination") },
                      "\(events.map { "\($0.kind)[\($0.detail ?? "")]" })")
        // A new migration works.
        let dest = try await fresh.migrate(port: daemon.proxyPort)
        defer { dest.close() }
        dest.output("hi")
        try await client.waitForData(count: 2)
        XCTAssertEqual(client.data, Array("hi".utf8))
        // The dropped migration's cookie no longer works, and trying it does not disturb the VM.
        let late = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "rebooter",
                                                 role: .destination(sequence: seq, secret: secret))
        defer { late.close() }
        XCTAssertNil(late.peerAccepted)
        XCTAssertEqual(wireFrames(late.raw, command: Code.unknownSuboptionRcvd2), [[0xFF, 0xFA, 0xE8, 0x03, 0x2C, 0xFF, 0xF0]])
        try await settle()
        XCTAssertFalse(dest.closed, "a rejected VMOTION-PEER displaced the VM's connection")
        dest.output("!")
        try await client.waitForData(count: 3)
        XCTAssertEqual(client.data, Array("hi!".utf8))
    }

    // MARK: - 10. the source closes before COMPLETE

    func testSourceClosingBeforeCompleteStillCompletesWithoutLoss() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(110)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "racer")
        defer { source.close(); client.close() }

        let counting = (0x20...0x7E).map { UInt8($0) }
        for b in counting[0..<32] { source.output([b]) }
        let seq = [0x41, 0x42, 0x43, 0x44] as [UInt8]
        let secret = try await goahead(source, seq)
        let dest = try await destination(daemon, uuid, name: "racer", sequence: seq, secret: secret)
        defer { dest.close() }
        let typed = Array("typed".utf8)
        client.send(typed)

        // The source's close is processed before the COMPLETE.
        source.close()
        try await daemon.waitForList("source gone") { $0.first { $0.uuid == uuid }?.connected == false }
        dest.completeVMotion(sequence: seq)
        for b in counting[32..<64] { dest.output([b]) }
        try await client.waitForData(count: 64)
        try await dest.waitForData(count: typed.count)
        XCTAssertTrue(dest.unknownSuboptions.isEmpty, "COMPLETE was rejected")
        XCTAssertEqual(dest.data, typed)
        XCTAssertEqual(source.data, [])

        // Second migration: source close and COMPLETE leave at the same instant.
        let seq2 = [0x51, 0x52, 0x53, 0x54] as [UInt8]
        let secret2 = try await goahead(dest, seq2)
        let dest2 = try await destination(daemon, uuid, name: "racer", sequence: seq2, secret: secret2)
        defer { dest2.close() }
        dest.close()
        dest2.completeVMotion(sequence: seq2)
        for b in counting[64...] { dest2.output([b]) }
        try await client.waitForData(count: counting.count)
        try await settle(200)
        XCTAssertEqual(client.data, counting, "no loss, no duplication")
        XCTAssertFalse(client.closed)
        XCTAssertTrue(dest2.unknownSuboptions.isEmpty, "COMPLETE was rejected")
        let vm = try await daemon.waitForList("on the second destination") {
            $0.first { $0.uuid == uuid }.map { $0.connected && !$0.migrating } ?? false
        }
        XCTAssertEqual(vm.first { $0.uuid == uuid }?.port, port)
        try await waitForEvents(daemon, uuid: uuid, "two vmotion-complete") { $0.filter { $0.kind == "vmotion-complete" }.count == 2 }
    }

    // MARK: - 11. events

    func testSuccessfulMigrationRecordsEventsInOrderWithPeers() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(111)
        let source = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "audited")
        defer { source.close() }
        _ = try await daemon.port(of: uuid)
        let sourcePeer = try await info(daemon, uuid)?.peer
        XCTAssertNotNil(sourcePeer)
        let dest = try await source.migrate(port: daemon.proxyPort, sequence: [0x61, 0x62, 0x63, 0x64])
        defer { dest.close() }
        let after = try await daemon.waitForList("on destination") {
            $0.first { $0.uuid == uuid }.map { $0.connected && !$0.migrating && $0.peer != sourcePeer } ?? false
        }
        let destPeer = after.first { $0.uuid == uuid }?.peer
        XCTAssertNotNil(destPeer)

        let wanted = ["vmotion-begin", "vmotion-goahead", "vmotion-peer", "vmotion-complete"]
        let events = try await waitForEvents(daemon, uuid: uuid, "the vMotion events") { e in wanted.allSatisfy { k in e.contains { $0.kind == k } } }
        let vmotion = events.filter { wanted.contains($0.kind) }
        XCTAssertEqual(vmotion.map(\.kind), wanted, "\(events.map(\.kind))")
        guard vmotion.count == 4 else { return }
        XCTAssertEqual(vmotion[0].peer, sourcePeer)
        XCTAssertEqual(vmotion[1].peer, sourcePeer)
        XCTAssertEqual(vmotion[2].peer, destPeer)
        XCTAssertEqual(vmotion[3].peer, destPeer)
        XCTAssertTrue(vmotion.allSatisfy { $0.uuid == uuid && $0.name == "audited" })
        XCTAssertTrue(vmotion.allSatisfy { ($0.peer ?? "").hasPrefix("127.0.0.1:") }, "\(vmotion.map(\.peer))")
        XCTAssertTrue(zip(vmotion, vmotion.dropFirst()).allSatisfy { $0.time <= $1.time })
        let detail = vmotion[3].detail ?? ""
        XCTAssertNotNil(detail.range(of: #"[0-9]+(\.[0-9]+)? ms"#, options: .regularExpression), detail)
        XCTAssertTrue((vmotion[0].detail ?? "").contains("61626364"), vmotion[0].detail ?? "")
    }

    // MARK: - 12. several serial ports per VM

    func testSeveralSerialPortsPerVMHaveTheirOwnStablePorts() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(112)
        var (com1, client1, port1) = try await vmWithClient(daemon, uuid, name: "twin")
        var (com2, client2, port2) = try await vmWithClient(daemon, uuid, name: "twin", serviceURI: "vSPC.py?port=com2", label: "com2")
        defer { com1.close(); com2.close(); client1.close(); client2.close() }
        XCTAssertNotEqual(port1, port2)
        XCTAssertFalse(com1.closed, "the second serial port replaced the first one's connection")

        let listed = try await daemon.list()
        XCTAssertEqual(listed.count, 2)
        XCTAssertEqual(Set(listed.map(\.label)), ["", "com2"])
        XCTAssertTrue(listed.allSatisfy { $0.uuid == uuid && $0.connected && $0.name == "twin" })
        let text = try Daemon.run("vspc", ["list", "--admin", "127.0.0.1:\(daemon.adminPort)"])
        XCTAssertEqual(text.status, 0, text.err)
        let classic = UUIDSpelling.classic(uuid)
        XCTAssertEqual(text.out, "twin:\(classic):\(port1)\ntwin#com2:\(classic):\(port2)\n")

        // Each port carries only its own serial port's bytes, both ways.
        try await checkSeparation(com1, client1, com2, client2, "1")

        // A daemon restart keeps both ports.
        try await daemon.stop()
        com1.close(); com2.close(); client1.close(); client2.close()
        try await daemon.start()
        let restarted = try await daemon.list()
        XCTAssertEqual(Set(restarted.map { "\($0.label):\($0.port)" }), [":\(port1)", "com2:\(port2)"])
        XCTAssertTrue(restarted.allSatisfy { $0.listening && !$0.connected })
        com2 = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "twin", serviceURI: "vSPC.py?port=com2")
        com1 = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "twin")
        let again1 = try await daemon.port(of: uuid)
        let again2 = try await daemon.port(of: uuid, label: "com2")
        XCTAssertEqual(again1, port1)
        XCTAssertEqual(again2, port2)
        client1 = try await SimulatedClient.connect(port: port1)
        client2 = try await SimulatedClient.connect(port: port2)
        try await daemon.waitForList("both clients") { $0.allSatisfy { $0.clients == 1 && $0.connected } }
        try await checkSeparation(com1, client1, com2, client2, "2")

        // Migrating com2 does not disturb com1.
        let com1Peer = try await info(daemon, uuid)?.peer
        let moved = try await com2.migrate(port: daemon.proxyPort)
        com2 = moved
        let afterMove = try await daemon.waitForList("com2 migrated") {
            $0.first { $0.label == "com2" }.map { $0.connected && !$0.migrating } ?? false
        }
        XCTAssertFalse(com1.closed)
        XCTAssertEqual(afterMove.first { $0.label == "" }?.peer, com1Peer)
        XCTAssertEqual(afterMove.first { $0.label == "" }?.connected, true)
        XCTAssertEqual(afterMove.first { $0.label == "com2" }?.port, port2)
        try await checkSeparation(com1, client1, com2, client2, "3")

        // Both ports migrating at once, with the same sequence (one vMotion of the whole VM).
        let seq: [UInt8] = [0x71, 0xFF, 0x72, 0x73]
        let (s1, s2, proxyPort) = (com1, com2, daemon.proxyPort)
        async let m1 = s1.migrate(port: proxyPort, sequence: seq)
        async let m2 = s2.migrate(port: proxyPort, sequence: seq)
        let (d1, d2) = try await (m1, m2)
        com1 = d1
        com2 = d2
        let both = try await daemon.waitForList("both migrated") { $0.count == 2 && $0.allSatisfy { $0.connected && !$0.migrating } }
        XCTAssertEqual(Set(both.map { "\($0.label):\($0.port)" }), [":\(port1)", "com2:\(port2)"])
        try await checkSeparation(com1, client1, com2, client2, "4")
    }

    private func checkSeparation(_ com1: SimulatedVM, _ client1: SimulatedClient, _ com2: SimulatedVM,
                                 _ client2: SimulatedClient, _ round: String) async throws {
        _ = client1.takeData(); _ = client2.takeData(); _ = com1.takeData(); _ = com2.takeData()
        let out1 = Array("com1 says \(round)\r\n".utf8) + [0xFF]
        let out2 = Array("com2 says \(round) and more\r\n".utf8)
        com1.output(out1)
        com2.output(out2)
        try await client1.waitForData(count: out1.count)
        try await client2.waitForData(count: out2.count)
        let in1 = Array("to-com1-\(round)".utf8)
        let in2 = Array("to-com2-\(round)!".utf8)
        client1.send(in1)
        client2.send(in2)
        try await com1.waitForData(count: in1.count)
        try await com2.waitForData(count: in2.count)
        try await settle(200)
        XCTAssertEqual(client1.data, out1, "round \(round)")
        XCTAssertEqual(client2.data, out2, "round \(round)")
        XCTAssertEqual(com1.data, in1, "round \(round)")
        XCTAssertEqual(com2.data, in2, "round \(round)")
    }

    // MARK: - 13. 200 VMs migrating at once

    func testTwoHundredVMsMigrateAtOnce() async throws {
        let daemon = try await startDaemon(portRangeSize: 300)
        let proxyPort = daemon.proxyPort
        let salt = UInt32.random(in: 0...UInt32.max)
        let count = 200
        let sources = try await withThrowingTaskGroup(of: (Int, SimulatedVM).self) { group in
            for i in 0..<count {
                group.addTask {
                    (i, try await SimulatedVM.connect(port: proxyPort, uuid: testUUID(i, salt), name: "herd-\(i)"))
                }
            }
            var all: [Int: SimulatedVM] = [:]
            for try await (i, vm) in group { all[i] = vm }
            return all
        }
        defer { sources.values.forEach { $0.close() } }
        let listed = try await daemon.waitForList("\(count) VMs", timeout: 60) { $0.count == count }
        let ports = Dictionary(uniqueKeysWithValues: listed.map { ($0.uuid, $0.port) })
        XCTAssertEqual(Set(ports.values).count, count)

        let sample = Array(stride(from: 0, to: count, by: 20))
        var clients: [Int: SimulatedClient] = [:]
        for i in sample { clients[i] = try await SimulatedClient.connect(port: ports[testUUID(i, salt)]!) }
        defer { clients.values.forEach { $0.close() } }
        try await daemon.waitForList("sample clients", timeout: 30) { vms in
            sample.allSatisfy { i in vms.first { $0.uuid == testUUID(i, salt) }?.clients == 1 }
        }

        let destinations = try await withThrowingTaskGroup(of: (Int, SimulatedVM).self) { group in
            for (i, vm) in sources {
                group.addTask { (i, try await vm.migrate(port: proxyPort)) }
            }
            var all: [Int: SimulatedVM] = [:]
            for try await (i, vm) in group { all[i] = vm }
            return all
        }
        defer { destinations.values.forEach { $0.close() } }
        XCTAssertEqual(destinations.count, count)

        let after = try await daemon.waitForList("all \(count) on their destinations", timeout: 60) { vms in
            vms.count == count && vms.allSatisfy { $0.connected && !$0.migrating }
        }
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: after.map { ($0.uuid, $0.port) }), ports, "ports changed")

        for (i, dest) in destinations { dest.output("marker-\(i)\r\n") }
        for i in sample {
            let expected = Array("marker-\(i)\r\n".utf8)
            try await clients[i]!.waitForData(count: expected.count, timeout: 30)
        }
        try await settle(200)
        for i in sample {
            XCTAssertEqual(clients[i]!.data, Array("marker-\(i)\r\n".utf8), "VM \(i)")
            XCTAssertFalse(clients[i]!.closed)
        }
        XCTAssertTrue(destinations.values.allSatisfy { !$0.closed && $0.unknownSuboptions.isEmpty })
    }

    // MARK: - 14. a service URI the daemon does not accept

    func testRenameAfterAMigrationIsRecorded() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(1201)
        let (source, client, _) = try await vmWithClient(daemon, uuid, name: "before-move")
        defer { client.close() }
        let dest = try await source.migrate(port: daemon.proxyPort)
        defer { dest.close() }
        try await daemon.waitForList("migrated") { $0.first { $0.uuid == uuid }.map { $0.connected && !$0.migrating } ?? false }
        dest.rename("after-move")
        try await daemon.waitForList("renamed") { $0.first { $0.uuid == uuid }?.name == "after-move" }
        let events = try await waitForEvents(daemon, uuid: uuid, "name-change") { $0.contains { $0.kind == "name-change" } }
        XCTAssertTrue(events.contains { $0.kind == "name-change" && $0.detail == "before-move -> after-move" })
    }

    func testUnacceptedServiceURIGetsWontProxy() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(114)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "elsewhere",
                                               serviceURI: "other.py", waitForProxy: false)
        defer { vm.close() }
        try await vm.wait("the DO-PROXY answer") { vm.proxyReply != nil }
        XCTAssertEqual(vm.proxyReply, Code.wontProxy)
        XCTAssertEqual(wireFrames(vm.raw, command: Code.wontProxy), [[0xFF, 0xFA, 0xE8, 0x49, 0xFF, 0xF0]])
        XCTAssertTrue(wireFrames(vm.raw, command: Code.willProxy).isEmpty)

        // A refused VM gets no console port.
        try await settle()
        let listed = try await daemon.list()
        XCTAssertFalse(listed.contains { $0.uuid == uuid }, "a VM refused with WONT-PROXY was given a port: \(listed)")

        // The daemon keeps serving.
        let good = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(1140), name: "here")
        defer { good.close() }
        XCTAssertEqual(good.proxyReply, Code.willProxy)
        _ = try await daemon.port(of: good.uuid)
    }
}
