import Foundation
import VSPCCore
import VSPCStore
import XCTest

/// Issue 14, item 3, with OpenSSH connection multiplexing (`ControlMaster`): a reload of authorized_keys reaches
/// the connections already open and the sessions opened later on them.
extension SSHDoorTests {
    /// An ssh session over the connection whose control socket is `control`: the master (`ControlMaster=yes`)
    /// or another session on it (`no`: and if the socket is gone, a connection of its own).
    func muxSession(_ door: Door, _ key: SSHKey, _ user: String, control: String, master: Bool) throws -> SSHSession {
        let session = try SSHSession("ssh \(user) (\(key.comment), \(master ? "master" : "muxed"))",
                                     sshOptions(port: door.sshPort, key: key, knownHosts: knownHosts)
                                         + ["-o", "ControlMaster=\(master ? "yes" : "no")", "-o", "ControlPath=\(control)",
                                            "-tt", "\(user)@127.0.0.1"])
        sessions.append(session)
        return session
    }

    func testAReloadReachesMultiplexedConnectionsAndTheirNewSessions() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let bob = try makeKey("ed25519", "bob@desk12")
        let door = try await startDoor([try entry(alice), try entry(bob)])
        let vm = try await connectVM(door, testUUID(21), "web-21")
        let aliceControl = work.appendingPathComponent("cm-a").path
        let bobControl = work.appendingPathComponent("cm-b").path

        // Two sessions of bob's over one connection, and alice's master.
        let b1 = try muxSession(door, bob, "web-21", control: bobControl, master: true)
        try await b1.waitFor(banner("web-21"))
        let b2 = try muxSession(door, bob, "web-21", control: bobControl, master: false)
        try await b2.waitFor(banner("web-21"))
        let a1 = try muxSession(door, alice, "web-21", control: aliceControl, master: true)
        try await a1.waitFor(banner("web-21"))
        let attaches = try await waitForEvents(door.daemon, uuid: vm.uuid, "three attaches") {
            $0.filter { $0.kind == .clientAttach }.count == 3
        }.filter { $0.kind == .clientAttach }
        XCTAssertEqual(attaches[0].peer, attaches[1].peer, "bob's two sessions share one TCP connection")

        // Bob's key goes; alice's becomes read-only. SIGHUP.
        try writeAuthorizedKeys(door, ["read-only " + (try entry(alice))])
        let reloads = occurrences(of: "reloaded authorized keys from", in: door.daemon.log)
        kill(door.daemon.process!.processIdentifier, SIGHUP)
        try await waitForLog(door, "reloaded authorized keys from", count: reloads + 1)

        // Both of bob's sessions end, told why, and his connection is closed under them.
        for b in [b1, b2] {
            try await b.waitFor("[vspcd: your key was removed: this session ends]")
            try await b.waitForExit()
        }
        // A new session through bob's control path finds no connection, and a new login is refused.
        let b3 = try muxSession(door, bob, "web-21", control: bobControl, master: false)
        let b3Status = try await b3.waitForExit()
        XCTAssertNotEqual(b3Status, 0)
        XCTAssertFalse(b3.text.contains("connected to web-21"), b3.text)

        // Alice's open session is told it is read-only now, and what it types no longer reaches the VM.
        try await a1.waitFor("[vspcd: your key is now read-only: what you type does not reach the VM]")
        // A session opened now on alice's connection (authenticated before the reload) is read-only too.
        let a2 = try muxSession(door, alice, "web-21", control: aliceControl, master: false)
        try await a2.waitFor(banner("web-21", readOnly: true))
        a2.type("typed-after-reload\r")
        a1.type("typed-by-a1\r")
        try await sshBarrier(a2)
        try await sshBarrier(a1)
        vm.output("barrier\r\n")
        try await a2.waitFor("barrier\r\n")
        XCTAssertFalse(String(decoding: vm.data, as: UTF8.self).contains("typed"), "nothing typed reaches the VM")

        let events = try await waitForEvents(door.daemon, uuid: vm.uuid, "the reload's records") {
            $0.filter { $0.kind == .clientDropped }.count == 2 && $0.contains { $0.kind == .clientAccessChanged }
        }
        let (bobPrint, alicePrint) = (try bob.fingerprint, try alice.fingerprint)
        XCTAssertEqual(events.filter { $0.kind == .clientDropped }.map(\.detail),
                       Array(repeating: "key revoked; door=ssh mode=read-write key=bob@desk12 \(bobPrint)", count: 2))
        XCTAssertEqual(events.first { $0.kind == .clientAccessChanged }?.detail,
                       "read-write -> read-only by a reload; door=ssh mode=read-only key=alice@laptop \(alicePrint)")
    }
}

/// Issue 13, item 6, on the SSH door with the real OpenSSH client: a VM rebuilt under the same name.
extension SSHDoorTests {
    func testARebuiltVMsNameReachesTheConnectedOneElseListsBoth() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let door = try await startDoor([try entry(alice)])
        let (oldUUID, newUUID) = (testUUID(31), testUUID(32))
        let old = try await connectVM(door, oldUUID, "web-5")
        old.close()
        _ = try await waitForEvents(door.daemon, uuid: oldUUID, "the old VM's disconnect") { $0.contains { $0.kind == .vmDisconnect } }
        let rebuilt = try await connectVM(door, newUUID, "web-5")
        let session = try await attach(door, alice, "web-5")
        rebuilt.output("from the rebuilt VM\r\n")
        try await session.waitFor("from the rebuilt VM\r\n")
        session.menu(".")
        try await session.waitForExit()
        rebuilt.close()
        _ = try await waitForEvents(door.daemon, uuid: newUUID, "the rebuilt VM's disconnect") { $0.contains { $0.kind == .vmDisconnect } }
        let refused = try sshRun(door, alice, "web-5")
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.text.hasPrefix("vspcd: \"web-5\" is ambiguous; it names several consoles:\n"), refused.text)
        XCTAssertTrue(refused.text.contains(UUIDSpelling.classic(oldUUID)) && refused.text.contains(UUIDSpelling.classic(newUUID)),
                      refused.text)
    }
}
