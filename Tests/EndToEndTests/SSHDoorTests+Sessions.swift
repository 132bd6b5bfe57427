import Foundation
import VSPCCore
import VSPCSim
import XCTest

/// The SSH front door end to end, continued: the escape menu, notices, the audit in `vspc history`, the telnet ports
/// in read-only and off modes, the admin endpoint on a Unix socket, and authorized_keys reloads.
extension SSHDoorTests {
    // MARK: - 7. escape menu

    func testEscapeMenuWhoExclusiveWriteAndDisconnect() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let bob = try makeKey("ecdsa", "bob@desk")
        let door = try await startDoor([try entry(alice), try entry(bob)])
        let uuid = testUUID(7)
        let vm = try await connectVM(door, uuid, "web-7")
        let a = try await attach(door, alice, "web-7")
        let person = try await telnet(door, uuid)
        try await a.waitFor(" attached over telnet (read-write)]\r\n")

        // ?: the help; w: both people, over both doors.
        a.menu("?")
        try await a.waitFor("vspcd escape menu: Ctrl-] followed by\r\n  .       disconnect\r\n")
        a.menu("w")
        try await a.waitForOutput("the who list") {
            let text = String(decoding: $0, as: UTF8.self)
            return text.contains("who is attached to web-7:\r\n") && self.whoLines(text).count == 2 && text.hasSuffix("\r\n")
        }
        let who = whoLines(a.text)
        XCTAssertEqual(who.count, 2, a.text)
        XCTAssertTrue(who.contains { $0.hasPrefix("  ssh    alice@laptop from 127.0.0.1:") && $0.contains(", read-write, since ") }, "\(who)")
        XCTAssertTrue(who.contains { $0.hasPrefix("  telnet 127.0.0.1:") && $0.contains(", read-write, since ") }, "\(who)")

        let b = try await attach(door, bob, "web-7")
        try await a.waitFor("[vspcd: bob@desk attached over ssh (read-write)]\r\n")

        // f: alice alone may type.
        a.menu("f")
        let taken = "[vspcd: alice@laptop took exclusive write; everybody else is read-only]\r\n"
        try await a.waitFor(taken)
        try await b.waitFor(taken)
        b.type("bob-typed\r")
        try await b.waitFor("[vspcd: alice@laptop holds exclusive write: what you type does not reach the VM]\r\n")
        person.send(Array("telnet-typed\r".utf8))
        try await person.barrier()
        a.type("alice-typed\r")
        try await expectVMData(vm, "alice-typed\r", "only the holder's input reaches the VM")
        let before = occurrences(of: "who is attached to web-7:", in: a.text)
        a.menu("w")
        try await a.waitFor("who is attached to web-7:", count: before + 1)
        try await a.waitForOutput("the second who list") {
            let text = String(decoding: $0, as: UTF8.self)
            return self.whoLines(text).count == 3 && text.hasSuffix("\r\n")
        }
        let during = whoLines(a.text)
        XCTAssertTrue(during.contains { $0.hasPrefix("  ssh    alice@laptop ") && $0.contains(", exclusive, ") }, "\(during)")
        XCTAssertTrue(during.contains { $0.hasPrefix("  ssh    bob@desk ") && $0.contains(", read-only, ") }, "\(during)")
        XCTAssertTrue(during.contains { $0.hasPrefix("  telnet ") && $0.contains(", read-only, ") }, "\(during)")

        // f again: everybody types again.
        a.menu("f")
        let released = "[vspcd: alice@laptop released exclusive write]\r\n"
        try await a.waitFor(released)
        try await b.waitFor(released)
        b.type("bob-again\r")
        try await expectVMData(vm, "alice-typed\rbob-again\r", "bob types again")
        person.send(Array("telnet-again\r".utf8))
        try await expectVMData(vm, "alice-typed\rbob-again\rtelnet-again\r", "the telnet person types again")
        // Ctrl-] Ctrl-] sends one Ctrl-].
        a.type([UInt8(ascii: "x"), 0x1D, 0x1D, UInt8(ascii: "y")])
        try await expectVMData(vm, "alice-typed\rbob-again\rtelnet-again\rx\u{1D}y", "one Ctrl-]")

        // .: alice leaves, holding exclusive write again, with exit status 0; bob is told, and may type again.
        a.menu("f")
        try await b.waitFor(taken, count: 2)
        a.menu(".")
        let status = try await a.waitForExit()
        XCTAssertEqual(status, 0, a.err)
        try await b.waitFor("[vspcd: alice@laptop detached]\r\n")
        XCTAssertEqual(occurrences(of: released, in: b.text), 2, "leaving releases exclusive write")
        b.type("bob-last\r")
        try await expectVMData(vm, "alice-typed\rbob-again\rtelnet-again\rx\u{1D}ybob-last\r", "bob types once alice has left")
        XCTAssertTrue(b.isRunning)
    }

    /// The lines of the latest `w` list in a session's output.
    private func whoLines(_ text: String) -> [String] {
        guard let range = text.range(of: "who is attached to", options: .backwards) else { return [] }
        let lines = text[range.upperBound...].components(separatedBy: "\r\n").dropFirst()
        return Array(lines.prefix { $0.hasPrefix("  ") })
    }

    // MARK: - 8. notices

    func testNoticesOnSSHSessionsAndNoneOnTheTelnetPort() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let bob = try makeKey("ed25519", "bob@desk")
        let door = try await startDoor([try entry(alice), try entry(bob, options: "read-only")])
        let uuid = testUUID(8)
        let vm = try await connectVM(door, uuid, "web-8")
        let person = try await telnet(door, uuid)
        try await door.daemon.waitForList("the telnet person") { $0.first?.clients == 1 }
        let a = try await attach(door, alice, "web-8")
        vm.output("before\r\n")
        try await a.waitFor("before\r\n")

        let b = try await attach(door, bob, "web-8", readOnly: true)
        try await a.waitFor("\r\n[vspcd: bob@desk attached over ssh (read-only)]\r\n")
        b.menu(".")
        let bobStatus = try await b.waitForExit()
        XCTAssertEqual(bobStatus, 0)
        try await a.waitFor("\r\n[vspcd: bob@desk detached]\r\n")
        vm.output("after\r\n")
        try await a.waitFor("after\r\n")

        // The telnet person saw the console and nothing else.
        try await person.waitForData(count: 15, timeout: 30)
        XCTAssertEqual(String(decoding: person.data, as: UTF8.self), "before\r\nafter\r\n")
        XCTAssertFalse(String(decoding: person.raw, as: UTF8.self).contains("vspcd"))
        // The ssh session saw, in order: its banner, the console, bob coming and going, the console.
        let expected = "\r\n" + banner("web-8") + "before\r\n" + "\r\n[vspcd: bob@desk attached over ssh (read-only)]\r\n"
            + "\r\n[vspcd: bob@desk detached]\r\n" + "after\r\n"
        XCTAssertEqual(a.text, expected)
    }

    // MARK: - 9. audit

    func testAttachDetachAndExclusiveWriteAreInVspcHistory() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let bob = try makeKey("ecdsa", "bob@desk")
        let door = try await startDoor([try entry(alice), try entry(bob, options: "read-only")])
        let uuid = testUUID(9)
        _ = try await connectVM(door, uuid, "web-9")
        let a = try await attach(door, alice, "web-9")
        let b = try await attach(door, bob, "web-9", readOnly: true)
        let person = try await telnet(door, uuid)
        try await a.waitFor(" attached over telnet (read-write)]")
        a.menu("f")
        try await a.waitFor("took exclusive write")
        a.menu("f")
        try await a.waitFor("released exclusive write")
        person.close()
        try await a.waitFor(" detached]", count: 1)
        b.menu(".")
        let bobStatus = try await b.waitForExit()
        XCTAssertEqual(bobStatus, 0)
        a.menu(".")
        let aliceStatus = try await a.waitForExit()
        XCTAssertEqual(aliceStatus, 0)

        let aliceFP = try alice.fingerprint, bobFP = try bob.fingerprint
        XCTAssertTrue(aliceFP.hasPrefix("SHA256:") && bobFP.hasPrefix("SHA256:"))
        let alicePeer = try peer(of: aliceFP, in: door), bobPeer = try peer(of: bobFP, in: door)
        let aliceDetail = "door=ssh mode=read-write key=alice@laptop \(aliceFP)"
        let bobDetail = "door=ssh mode=read-only key=bob@desk \(bobFP)"
        var history: [String] = []
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let result = try Daemon.run("vspc", ["history", "web-9", "--db", door.daemon.dbPath])
            XCTAssertEqual(result.status, 0, result.err)
            history = result.out.split(separator: "\n").map(String.init)
            if history.contains(where: { $0.hasSuffix("client-detach  peer=\(alicePeer)  \(aliceDetail)") }) { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        func index(_ suffix: String) -> Int? { history.firstIndex { $0.hasSuffix(suffix) } }
        let expected = [
            "client-attach  peer=\(alicePeer)  \(aliceDetail)",
            "client-attach  peer=\(bobPeer)  \(bobDetail)",
            "write-exclusive-taken  peer=\(alicePeer)  door=ssh mode=exclusive key=alice@laptop \(aliceFP)",
            "write-exclusive-released  peer=\(alicePeer)  door=ssh mode=exclusive key=alice@laptop \(aliceFP)",
            "client-detach  peer=\(bobPeer)  \(bobDetail)",
            "client-detach  peer=\(alicePeer)  \(aliceDetail)",
        ]
        let positions = expected.map(index)
        XCTAssertTrue(positions.allSatisfy { $0 != nil }, "missing \(zip(expected, positions).filter { $1 == nil }.map(\.0)) in\n\(history.joined(separator: "\n"))")
        XCTAssertEqual(positions.compactMap { $0 }, positions.compactMap { $0 }.sorted(), "in order:\n\(history.joined(separator: "\n"))")
        // The telnet person's visit, with its door and mode (no key).
        let telnetLines = history.filter { $0.contains("door=telnet") }
        XCTAssertEqual(telnetLines.count, 2, history.joined(separator: "\n"))
        XCTAssertTrue(telnetLines.first { $0.contains("  client-attach  peer=127.0.0.1:") }?.hasSuffix("  door=telnet mode=read-write") == true, "\(telnetLines)")
        XCTAssertTrue(telnetLines.first { $0.contains("  client-detach  peer=127.0.0.1:") }?.hasSuffix("  door=telnet mode=read-write") == true, "\(telnetLines)")
    }

    /// The `ip:port` the daemon logged for the connection that authenticated with `fingerprint`.
    private func peer(of fingerprint: String, in door: Door) throws -> String {
        for line in door.daemon.log.split(separator: "\n") {
            guard let range = line.range(of: " authenticated with \(fingerprint) "),
                  let start = line.range(of: "ssh: ", options: .backwards, range: line.startIndex..<range.lowerBound) else { continue }
            return String(line[start.upperBound..<range.lowerBound])
        }
        throw SimError("no authentication with \(fingerprint) in the log")
    }

    // MARK: - 10. telnet ports

    func testReadOnlyTelnetPortsWatchButNeverType() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let door = try await startDoor([try entry(alice)], extra: ["--telnet-ports", "read-only"])
        let uuid = testUUID(10)
        let vm = try await connectVM(door, uuid, "web-10")
        let a = try await attach(door, alice, "web-10")
        let person = try await telnet(door, uuid)
        try await a.waitFor(" attached over telnet (read-only)]")
        vm.output("console\r\n")
        try await person.waitForData(count: 9, timeout: 30)
        XCTAssertEqual(person.data, Array("console\r\n".utf8))

        person.send(Array("rm -rf /\r".utf8))
        try await person.barrier()
        a.type("from-ssh\r")
        try await expectVMData(vm, "from-ssh\r", "the telnet person's typing never reaches the VM")
        XCTAssertEqual(person.data, Array("console\r\n".utf8), "no notice on the telnet port")
    }

    func testTelnetPortsOffKeepThePortListedButNothingListens() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let door = try await startDoor([try entry(alice)], extra: ["--telnet-ports", "off"])
        let uuid = testUUID(11)
        let vm = try await connectVM(door, uuid, "web-11")
        let port = try await door.daemon.port(of: uuid)
        XCTAssertTrue(door.daemon.portRange.contains(port))
        let listing = try Daemon.run("vspc", ["list", "--admin", door.daemon.adminArgument])
        XCTAssertEqual(listing.out, "web-11:\(UUIDSpelling.classic(uuid)):\(port)\n")
        do {
            let peer = try await RawPeer.connect(port: port)
            peer.close()
            XCTFail("something listens on \(port)")
        } catch {}

        let a = try await attach(door, alice, "web-11", tty: false)
        vm.output("over ssh only\r\n")
        try await a.waitFor("over ssh only\r\n")
        a.type("typed\r")
        try await expectVMData(vm, "typed\r", "ssh input")
    }

    // MARK: - 11. admin on a Unix socket

    func testAdminOnAUnixSocket() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let door = try await startDoor([try entry(alice)], adminUnixSocket: true)
        let path = try XCTUnwrap(door.daemon.adminUnixPath)
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o170000, 0o140000, "a socket")
        XCTAssertEqual(info.st_mode & 0o777, 0o660)

        let uuid = testUUID(12)
        _ = try await connectVM(door, uuid, "web-12")
        let port = try await door.daemon.port(of: uuid)
        let listing = try Daemon.run("vspc", ["list", "--admin", "unix:\(path)"])
        XCTAssertEqual(listing.status, 0, listing.err)
        XCTAssertEqual(listing.out, "web-12:\(UUIDSpelling.classic(uuid)):\(port)\n")
        // No TCP admin port is opened.
        let tcp = try Daemon.run("vspc", ["list", "--admin", "127.0.0.1:\(door.daemon.adminPort)"])
        XCTAssertNotEqual(tcp.status, 0)
    }

    // MARK: - 12. authorized_keys reloads

    func testAuthorizedKeysReloadOnChangeAndOnSIGHUPKeepOpenSessions() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let bob = try makeKey("ed25519", "bob@desk12")
        let carol = try makeKey("ed25519", "carol@ops1")
        let door = try await startDoor([try entry(alice)])
        let vm = try await connectVM(door, testUUID(13), "web-13")
        let a = try await attach(door, alice, "web-13")
        XCTAssertEqual(try sshRun(door, bob, "list").status, 255, "bob is not in the file yet")

        // The file changes (no signal): after the next poll bob gets in.
        try writeAuthorizedKeys(door, [try entry(alice), try entry(bob)])
        let deadline = Date().addingTimeInterval(30)
        var result = try sshRun(door, bob, "list")
        while result.status != 0, Date() < deadline {
            try await Task.sleep(nanoseconds: 250_000_000)
            result = try sshRun(door, bob, "list")
        }
        XCTAssertEqual(result.status, 0, "bob's key was picked up from the changed file: \(result.err)")
        let b = try await attach(door, bob, "web-13")
        try await a.waitFor("[vspcd: bob@desk12 attached over ssh (read-write)]")

        // SIGHUP: carol replaces bob in place, with the file's size, inode and modification time unchanged, so
        // only the signal can make the daemon read it again.
        let path = door.authorizedKeysPath
        var before = stat()
        XCTAssertEqual(stat(path, &before), 0)
        let replaced = [try entry(alice), try entry(carol)].map { $0 + "\n" }.joined()
        XCTAssertEqual(replaced.utf8.count, Int(before.st_size), "same-length comments keep the size")
        let fd = open(path, O_WRONLY | O_TRUNC)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(Array(replaced.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }, replaced.utf8.count)
        var times = [before.st_atim, before.st_mtim]
        XCTAssertEqual(futimens(fd, &times), 0)
        close(fd)
        let reloads = occurrences(of: "reloaded authorized keys from", in: door.daemon.log)
        kill(door.daemon.process!.processIdentifier, SIGHUP)
        try await waitForLog(door, "reloaded authorized keys from", count: reloads + 1)
        XCTAssertEqual(try sshRun(door, carol, "list").status, 0, "carol's key was read on SIGHUP")
        XCTAssertEqual(try sshRun(door, bob, "list").status, 255, "bob's key is gone for new logins")

        // Issue 14: a reload reaches the sessions already open. Bob's key is gone: his session ended with a notice
        // (and is on record); alice's, whose key stayed, still works.
        try await b.waitFor("[vspcd: your key was removed: this session ends]")
        try await b.waitForExit()
        XCTAssertTrue(a.isRunning)
        vm.output("still here\r\n")
        try await a.waitFor("still here\r\n")
        a.type("alice-typed\r")
        try await expectVMData(vm, "alice-typed\r", "alice's open session still types")
        let history = try Daemon.run("vspc", ["history", "web-13", "--db", door.daemon.dbPath])
        XCTAssertTrue(history.out.contains("client-dropped  peer="), history.out)
        XCTAssertTrue(history.out.contains("key revoked; door=ssh mode=read-write key=bob@desk12"), history.out)
    }
}
