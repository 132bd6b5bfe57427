import XCTest
@testable import VSPCCore

/// SSH sessions in the concentrator (issue 9): the user name selects the console, the key decides what the
/// person may do, and every attach is on record.
final class ConcentratorSSHTests: XCTestCase {
    private var keyA: ConsoleKey { ConsoleKey(uuid: UUIDs.a, label: "") }
    private let fingerprint = "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

    private func key(_ comment: String, vms: [String]? = nil, readOnly: Bool = false) -> AuthorizedKey {
        AuthorizedKey(keyType: "ssh-ed25519", blob: Array(comment.utf8), comment: comment, vms: vms, readOnly: readOnly)
    }

    private func ssh(_ h: ConcentratorHarness, _ user: String, _ key: AuthorizedKey,
                     peer: String = "198.51.100.7:5000") -> (ConnectionID, [ConcentratorAction]) {
        let id = h.newConnection(.client)
        let acts = h.send(.sshSessionStarted(id, user: user, key: key, fingerprint: fingerprint, peer: peer))
        return (id, acts)
    }

    private func text(_ h: ConcentratorHarness, _ id: ConnectionID) -> String {
        String(decoding: h.takeOutput(id), as: UTF8.self)
    }

    func testAttachIsRecordedWithDoorModeKeyAndFingerprintAndGetsRawBytes() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        h.take()
        let (id, acts) = ssh(h, "web01", key("alice@laptop"))
        XCTAssertEqual(acts.records, [ConsoleEvent(kind: .clientAttach, time: h.clock.date, uuid: UUIDs.a, name: "web01",
                                                   peer: "198.51.100.7:5000",
                                                   detail: "door=ssh mode=read-write key=alice@laptop \(fingerprint)")])
        XCTAssertTrue(text(h, id).contains("connected to web01 (up)"))
        // Raw both ways: 0xFF is not doubled to an SSH session, and typed 0xFF is escaped towards the VM.
        XCTAssertEqual(h.vm(vm, says: [0x41, 0xFF, 0xFF, 0x00]), [.broadcast([id], [0x41, 0xFF, 0x00])])
        XCTAssertEqual(h.client(id, types: [0x61, 0xFF]), [.send(vm, [0x61, 0xFF, 0xFF])])
        XCTAssertEqual(h.list().first?.clients, 1)
    }

    func testListShowsOnlyWhatTheKeyMayReachAndEndsWithZero() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.a, name: "web-1")
        h.bringUpVM(UUIDs.b, name: "db-0", peer: "10.0.0.3:900")
        h.take()
        let (id, _) = ssh(h, "list", key("ops", vms: ["web-*"]))
        XCTAssertEqual(text(h, id), "web-1\t\(UUIDSpelling.classic(UUIDs.a))\tup\r\n")
        XCTAssertEqual(h.exitStatuses[id], 0)
    }

    func testAForbiddenVMAndAMissingOneGetTheSameRefusal() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.b, name: "db-0", peer: "10.0.0.3:900")
        h.take()
        let limited = key("ops", vms: ["web-*"])
        let (forbidden, refusal) = ssh(h, "db-0", limited)
        let (missing, _) = ssh(h, "nosuch", limited)
        XCTAssertEqual(text(h, forbidden), "vspcd: no console db-0 for this key\r\n")
        XCTAssertEqual(text(h, missing), "vspcd: no console nosuch for this key\r\n")
        XCTAssertEqual(h.exitStatuses[forbidden], 1)
        XCTAssertEqual(h.exitStatuses[missing], 1)
        XCTAssertEqual(refusal.recordKinds, [.clientRefused])
        XCTAssertEqual(h.list().first?.clients, 0)
    }

    func testReadOnlyKeystrokesNeverReachTheVMAndTheNoticeComesOnce() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        let (id, _) = ssh(h, "web01", key("bob", readOnly: true))
        h.take()
        _ = h.takeOutput(id)
        XCTAssertEqual(h.client(id, types: Array("rm -rf /".utf8)).nonLog,
                       [.send(id, Array("\r\n[vspcd: read-only: what you type does not reach the VM]\r\n".utf8))])
        XCTAssertEqual(h.client(id, types: Array("again".utf8)).nonLog, [])
        // BREAK is writing too.
        _ = h.client(id, types: [0x1D, UInt8(ascii: "b")])
        XCTAssertTrue(text(h, id).contains("read-only"))
    }

    func testExclusiveWriteMakesEveryoneElseReadOnlyUntilReleasedOrTheHolderLeaves() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        let (alice, _) = ssh(h, "web01", key("alice"))
        let (carol, _) = ssh(h, "web01", key("carol"), peer: "198.51.100.8:5000")
        let telnet = h.connectClient(keyA)
        h.take()
        let taken = h.client(alice, types: [0x1D, UInt8(ascii: "f")])
        XCTAssertEqual(taken.recordKinds, [.exclusiveTaken])
        XCTAssertTrue(text(h, carol).contains("alice took exclusive write"))
        XCTAssertFalse(h.client(carol, types: Array("x".utf8)).contains(.send(vm, Array("x".utf8))))
        XCTAssertEqual(h.client(telnet, types: Array("y".utf8)).nonLog, [], "a telnet person's typing is dropped, silently")
        XCTAssertEqual(h.client(alice, types: Array("z".utf8)), [.send(vm, Array("z".utf8))])
        // The holder leaves: released, and recorded.
        XCTAssertEqual(h.send(.clientClosed(alice)).recordKinds, [.exclusiveReleased, .clientDetach])
        XCTAssertEqual(h.client(carol, types: Array("x".utf8)), [.send(vm, Array("x".utf8))])
    }

    func testWhoBreakReplayAndDisconnect() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        h.vm(vm, says: Array("earlier output".utf8))
        let (alice, _) = ssh(h, "web01", key("alice"))
        h.connectClient(keyA, peer: "192.0.2.9:4444")
        h.take()
        _ = h.takeOutput(alice)
        h.client(alice, types: [0x1D, UInt8(ascii: "w")])
        let who = text(h, alice)
        XCTAssertTrue(who.contains("ssh    alice from 198.51.100.7:5000, read-write"), who)
        XCTAssertTrue(who.contains("telnet 192.0.2.9:4444 from 192.0.2.9:4444, read-write"), who)
        XCTAssertTrue(h.client(alice, types: [0x1D, UInt8(ascii: "b")]).contains(.send(vm, [0xFF, 0xF3])))
        _ = h.takeOutput(alice)
        h.client(alice, types: [0x1D, UInt8(ascii: "r")])
        // Issue 15 item 8: notice lines mark where the replay starts and ends.
        XCTAssertEqual(text(h, alice), "\r\n[vspcd: replay of the scrollback, 14 bytes:]\r\nearlier output\r\n[vspcd: end of the replay]\r\n")
        // Ctrl-] twice is one Ctrl-] for the VM.
        XCTAssertEqual(h.client(alice, types: [0x1D, 0x1D]), [.send(vm, [0x1D])])
        h.client(alice, types: [0x1D, UInt8(ascii: ".")])
        XCTAssertEqual(h.exitStatuses[alice], 0)
    }

    /// Issue 15 items 7 and 8: `w` shows the daemon's local time; an unknown key shows the help and sends nothing.
    func testWhoShowsLocalTimeAndAnUnknownKeyShowsTheHelp() {
        var config = ConcentratorConfig.forTests
        config.timeZone = TimeZone(secondsFromGMT: 5 * 3600 + 1800)!
        let h = ConcentratorHarness(config: config)
        let vm = h.bringUpVM()
        let (alice, _) = ssh(h, "web01", key("alice"))
        h.take()
        _ = h.takeOutput(alice)
        h.client(alice, types: [0x1D, UInt8(ascii: "w")])
        let shifted = DateFormatter()
        shifted.locale = Locale(identifier: "en_US_POSIX")
        shifted.timeZone = TimeZone(identifier: "UTC")
        shifted.dateFormat = "yyyy-MM-dd HH:mm:ss"
        let expected = shifted.string(from: h.clock.date.addingTimeInterval(5 * 3600 + 1800))
        let who = text(h, alice)
        XCTAssertTrue(who.contains("alice from 198.51.100.7:5000, read-write, since \(expected)\r\n"), who)
        XCTAssertFalse(who.contains("Z\r\n"), who)
        let unknown = h.client(alice, types: [0x1D, UInt8(ascii: "x")])
        XCTAssertFalse(unknown.contains { if case .send(vm, _) = $0 { return true } else { return false } }, "\(unknown)")
        XCTAssertEqual(text(h, alice), "\r\n" + EscapeMenu.helpText)
    }

    func testNoticesGoToSSHSessionsOnlyTelnetStaysByteExact() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        let (alice, _) = ssh(h, "web01", key("alice"))
        let telnet = h.connectClient(keyA)
        _ = h.takeOutput(telnet)
        _ = h.takeOutput(alice)
        let (bob, _) = ssh(h, "web01", key("bob", readOnly: true), peer: "198.51.100.9:1")
        XCTAssertTrue(text(h, alice).contains("[vspcd: bob attached over ssh (read-only)]"))
        XCTAssertEqual(h.takeOutput(telnet), [])
        h.send(.clientClosed(bob))
        XCTAssertTrue(text(h, alice).contains("[vspcd: bob detached]"))
        XCTAssertEqual(h.takeOutput(telnet), [])
    }

    func testTelnetPortsReadOnlyAndOff() {
        var config = ConcentratorConfig.forTests
        config.telnetPorts = .readOnly
        let h = ConcentratorHarness(config: config)
        let vm = h.bringUpVM()
        let person = h.connectClient(keyA)
        XCTAssertFalse(h.client(person, types: Array("x".utf8)).contains(.send(vm, Array("x".utf8))))
        XCTAssertEqual(h.take().records.filter { $0.kind == .clientAttach }.map(\.detail), ["door=telnet mode=read-only"])

        var off = ConcentratorConfig.forTests
        off.telnetPorts = .off
        let o = ConcentratorHarness(config: off)
        o.bringUpVM()
        XCTAssertEqual(o.binds.count, 0, "nothing listens")
        XCTAssertEqual(o.list().map(\.port), [20000], "the port is still assigned and listed")
        XCTAssertEqual(o.list().first?.saved, true)
    }
}
