import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// vMotion: wrong and replayed cookies, COMPLETE without PEER, PEER before GOAHEAD.
extension VMotionTests {
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
        try await barrier(wrong, source)
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
        try await barrier(replay, dest)
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

        try await barrier(stranger, stranger2, vm)
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

        try await barrier(intruder, vm)
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
}
