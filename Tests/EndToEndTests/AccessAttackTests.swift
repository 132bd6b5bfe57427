import Foundation
import VSPCCore
import VSPCSim
import XCTest

/// Issue 14 items 4-8, 18 and 19, each as the attack that reproduced it, against the real vspcd with the real
/// OpenSSH client and raw sockets bound to 127.0.0.2 (the stranger) next to people on 127.0.0.1.
final class AccessAttackTests: DaemonTestCase {
    var children: [ChildProcess] = []
    var connections: [SimConnection] = []
    var work: URL!

    override func setUp() async throws {
        signal(SIGPIPE, SIG_IGN)
        work = FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-access-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    /// The ssh processes and connections go first; the base class then prints the daemons' logs and removes them.
    override func tearDown() async throws {
        children.forEach { $0.terminate() }
        connections.forEach { $0.close() }
        children = []
        connections = []
        try await super.tearDown()
        try? FileManager.default.removeItem(at: work)
    }

    // MARK: - helpers

    var knownHosts: String { work.appendingPathComponent("known_hosts").path }

    /// A daemon with `--ssh` on a free port and these authorized_keys lines, started.
    func startDoor(_ lines: [String], _ extra: [String] = []) async throws -> (Daemon, Int) {
        let daemon = try makeDaemon(extra)
        let port = try freePort()
        daemon.extraArguments += ["--ssh", "127.0.0.1:\(port)"]
        let path = daemon.directory.appendingPathComponent("authorized_keys").path
        try Data(lines.map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: path))
        try await daemon.start()
        _ = try await daemon.waitForLog("ssh listening on 127.0.0.1:\(port)")
        return (daemon, port)
    }

    func key(_ comment: String) throws -> SSHKey { try SSHKey.generate("ed25519", comment: comment, in: work) }

    func vm(_ daemon: Daemon, _ uuid: String, _ name: String) async throws -> SimulatedVM {
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: name)
        connections.append(vm)
        _ = try await daemon.port(of: uuid)
        return vm
    }

    /// `ssh [-b source] user@127.0.0.1` with no input, to its end.
    func sshRun(_ port: Int, _ key: SSHKey, _ user: String, from source: String? = nil, tty: Bool = false) throws -> ToolResult {
        try runProgram("/usr/bin/ssh", sshOptions(port: port, key: key, knownHosts: knownHosts)
                       + (source.map { ["-b", $0] } ?? []) + [tty ? "-tt" : "-T", "\(user)@127.0.0.1"])
    }

    /// An interactive ssh whose stdin the test holds (it can be stopped with SIGSTOP).
    func sshOpen(_ port: Int, _ key: SSHKey, _ user: String, tty: Bool = false) throws -> ChildProcess {
        let child = try ChildProcess("/usr/bin/ssh", sshOptions(port: port, key: key, knownHosts: knownHosts)
                                     + [tty ? "-tt" : "-T", "\(user)@127.0.0.1"], interactive: true)
        children.append(child)
        return child
    }

    func output(_ child: ChildProcess) -> String { String(decoding: child.out, as: UTF8.self) }

    func banner(_ vm: String, readOnly: Bool = false) -> String {
        "[vspcd: connected to \(vm) (up); Ctrl-] ? for the menu\(readOnly ? "; read-only" : "")]\r\n"
    }

    /// An ssh session attached to `vm` (its banner arrived); it stays until the test ends it.
    func attach(_ port: Int, _ key: SSHKey, _ vm: String, readOnly: Bool = false) async throws -> ChildProcess {
        let session = try sshOpen(port, key, vm)
        try await waitUntil("\(vm)'s banner") { self.output(session).contains(self.banner(vm, readOnly: readOnly)) }
        return session
    }

    // MARK: - item 4: authorized_keys options

    /// A `command=` key got a read-write console because the option was ignored; `restrict` too.
    func testCommandKeyIsSkippedAndRestrictIsReadOnlyWithoutTerminal() async throws {
        let runner = try key("runner@ci")
        let guest = try key("guest@ops")
        let (daemon, port) = try await startDoor([
            #"command="uptime" "# + (try runner.publicLine),
            "restrict " + (try guest.publicLine),
        ])
        let uuid = testUUID(41)
        let machine = try await vm(daemon, uuid, "web-41")
        XCTAssertTrue(daemon.log.contains(#"line 1: option "command" is not supported by this server; the line is skipped rather than give the key more access than it says"#),
                      daemon.log)

        let refused = try sshRun(port, runner, "web-41")
        XCTAssertEqual(refused.status, 255, "the command= key gets nothing")
        XCTAssertTrue(refused.err.contains("Permission denied"), refused.err)

        // restrict: no terminal (ssh -tt gives up, as against sshd), and read-only.
        let demanded = try sshRun(port, guest, "web-41", tty: true)
        XCTAssertEqual(demanded.status, 255)
        XCTAssertTrue(demanded.err.contains("PTY allocation request failed"), demanded.err)
        let session = try await attach(port, guest, "web-41", readOnly: true)
        session.write(Array("reboot\n".utf8))
        try await waitUntil("the read-only notice") { self.output(session).contains("read-only: what you type does not reach the VM") }
        machine.output("still here")
        try await waitUntil("the VM's output") { self.output(session).contains("still here") }
        XCTAssertEqual(machine.data, [], "nothing typed reached the VM")
    }

    func testFromAndExpiryTime() async throws {
        let alice = try key("alice@ops")
        let old = try key("old@ops")
        let (daemon, port) = try await startDoor([
            #"from="127.0.0.2" "# + (try alice.publicLine),
            #"expiry-time="20200101" "# + (try old.publicLine),
        ])
        _ = try await vm(daemon, testUUID(42), "web-42")
        let fromOne = try sshRun(port, alice, "web-42")
        XCTAssertEqual(fromOne.status, 255, "from 127.0.0.1: refused")
        let fromTwo = try ChildProcess("/usr/bin/ssh", sshOptions(port: port, key: alice, knownHosts: knownHosts)
                                       + ["-b", "127.0.0.2", "-T", "web-42@127.0.0.1"], interactive: true)
        children.append(fromTwo)
        try await waitUntil("the banner from 127.0.0.2") { self.output(fromTwo).contains(self.banner("web-42")) }
        XCTAssertEqual(try sshRun(port, old, "web-42").status, 255, "an expired key")
        try await waitUntil("both refusals logged") {
            daemon.log.contains("the client's address 127.0.0.1 is not in from=\"127.0.0.2\"")
                && daemon.log.contains("the key expired at 20200101 (expiry-time)")
        }
    }

    // MARK: - item 5: vms= globs name VMs

    /// `vms="b*"` reached every VM whose uuid starts with b.
    func testPlainGlobDoesNotMatchTheUUID() async throws {
        let bob = try key("bob@dev")
        let byUUID = try key("uuid@dev")
        let (daemon, port) = try await startDoor([
            #"vms="b*" "# + (try bob.publicLine),
            #"vms="uuid:B1*" "# + (try byUUID.publicLine),
        ])
        let uuid = "b1" + String(testUUID(43).dropFirst(2))
        _ = try await vm(daemon, uuid, "web-43")
        let refused = try sshRun(port, bob, "web-43")
        XCTAssertEqual(refused.status, 1, "the uuid starts with b, the name does not")
        XCTAssertFalse(refused.text.contains("connected to"), refused.text)
        _ = try await attach(port, byUUID, "web-43")
    }

    // MARK: - item 6: a host key others can read

    func testGroupReadableHostKeyStopsStartUp() async throws {
        let daemon = try makeDaemon(["--ssh", "127.0.0.1:\(try freePort())"])
        let hostKey = daemon.directory.appendingPathComponent("ssh_host_ed25519_key").path
        let made = try runProgram("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", hostKey])
        XCTAssertEqual(made.status, 0, made.err)
        chmod(hostKey, 0o640)
        // The admin endpoint may answer before the SSH door is set up; either way the daemon must stop.
        try? await daemon.start()
        try await waitUntil("vspcd to stop") { daemon.process?.isRunning == false }
        XCTAssertNotEqual(daemon.process?.terminationStatus, 0)
        XCTAssertTrue(daemon.log.contains("ssh host key \(hostKey) has mode 0640: it is open to group or others"), daemon.log)
        XCTAssertFalse(daemon.log.contains("ssh listening"), daemon.log)
    }

    // MARK: - item 7: per-address limits

    /// 64 idle sockets from one address held every pre-authentication slot for 30 s.
    func testIdleSocketsFromOneAddressDoNotLockOthersOut() async throws {
        let alice = try key("alice@ops")
        let (daemon, port) = try await startDoor([try alice.publicLine])
        _ = try await vm(daemon, testUUID(44), "web-44")
        let held = try (0..<64).map { _ in try RawSocket(from: "127.0.0.2", to: port) }
        try await waitUntil("56 of them closed by the daemon") { held.filter(\.isClosedByPeer).count >= 56 }
        _ = try await attach(port, alice, "web-44")
        XCTAssertEqual(occurrences(of: "connection from 127.0.0.2 refused", in: daemon.log), 1, "one line for 56 refusals")
        XCTAssertTrue(daemon.log.contains("connection from 127.0.0.2 refused: 8 connections from this address are waiting to authenticate"))
    }

    func testFailedAttemptsFromOneAddressAreLimited() async throws {
        let alice = try key("alice@ops")
        let mallory = try key("mallory@evil")
        let (daemon, port) = try await startDoor([try alice.publicLine], ["--ssh-per-source-max-failures", "3"])
        _ = try await vm(daemon, testUUID(45), "web-45")
        for _ in 0..<3 { XCTAssertEqual(try sshRun(port, mallory, "web-45", from: "127.0.0.2").status, 255) }
        try await waitUntil("three failures logged") { occurrences(of: "is not in the authorized keys", in: daemon.log) >= 3 }
        let blocked = try sshRun(port, alice, "web-45", from: "127.0.0.2")
        XCTAssertEqual(blocked.status, 255, "that address is refused for a while, whatever key it brings")
        XCTAssertTrue(daemon.log.contains("connection from 127.0.0.2 refused: 3 failed attempts from this address in the last 60 s"))
        _ = try await attach(port, alice, "web-45")
    }

    // MARK: - item 8: idle timeout and keepalives

    func testIdleSessionEnds() async throws {
        let alice = try key("alice@ops")
        let (daemon, port) = try await startDoor([try alice.publicLine], ["--ssh-idle-timeout", "1"])
        _ = try await vm(daemon, testUUID(46), "web-46")
        let session = try await attach(port, alice, "web-46")
        try await waitUntil("ssh exits") { !session.isRunning }
        XCTAssertEqual(session.exitStatus, 124)
        XCTAssertTrue(output(session).hasSuffix("\n[vspcd: no input or output for 1 s; session ended]\n"), output(session))
        XCTAssertTrue(daemon.log.contains("ended: no input or output for 1 s"), daemon.log)
    }

    /// A client that stops answering (stopped process; the kernel still acknowledges) is found and dropped.
    func testDeadClientIsDroppedByKeepalives() async throws {
        let alice = try key("alice@ops")
        let (daemon, port) = try await startDoor([try alice.publicLine], ["--ssh-keepalive-interval", "0.3"])
        let machine = try await vm(daemon, testUUID(47), "web-47")
        let live = try await attach(port, alice, "web-47")
        let dead = try await attach(port, alice, "web-47")
        kill(dead.pid, SIGSTOP)
        try await waitUntil("the stopped client is dropped") { daemon.log.contains("did not answer 3 keepalives 300 ms apart; dropped") }
        kill(dead.pid, SIGCONT)
        try await waitUntil("the dropped ssh exits") { !dead.isRunning }
        XCTAssertEqual(dead.exitStatus, 255)
        XCTAssertEqual(occurrences(of: "did not answer 3 keepalives", in: daemon.log), 1, "the live client answered them all")
        // The drop is on record, with its reason.
        XCTAssertEqual(occurrences(of: "client-dropped web-47", in: daemon.log), 1, daemon.log)
        XCTAssertTrue(daemon.log.contains("did not answer keepalives; door=ssh"), daemon.log)
        live.write(Array("x".utf8))
        try await machine.wait("the live client's byte", timeout: 30) { machine.data == Array("x".utf8) }
    }

    // MARK: - item 18: the metrics listener

    /// Eight half-sent requests from one address blocked scraping for 90 s.
    func testHalfSentRequestsDoNotBlockScraping() async throws {
        let daemon = try makeDaemon(["--metrics", "127.0.0.1:\(try freePort())"])
        let metricsPort = Int(daemon.extraArguments[1].split(separator: ":")[1])!
        try await daemon.start()
        // The admin endpoint answers before the HTTP listener is bound: wait for it.
        try await daemon.waitForLog("HTTP on ")
        let held = try (0..<10).map { _ in try RawSocket(from: "127.0.0.2", to: metricsPort) }
        for socket in held { socket.send("GET /metr") }
        try await waitUntil("the connections beyond 8 from 127.0.0.2 answered 503") { held.filter(\.isClosedByPeer).count >= 2 }
        let scrape = try httpGet(port: metricsPort, path: "/metrics", timeout: 3)
        XCTAssertEqual(scrape.status, 200)
        XCTAssertTrue(scrape.body.contains("vspc_build_info"), scrape.body)
        // And the half-sent requests are closed within the request timeout.
        try await waitUntil("every half-sent request is closed") { held.allSatisfy(\.isClosedByPeer) }
    }

    // MARK: - item 19: the admin socket's mode

    func testAdminSocketIsCreatedWithItsMode() async throws {
        let daemon = try makeDaemon()
        daemon.adminUnixPath = daemon.directory.appendingPathComponent("admin.sock").path
        // The daemon inherits a umask of 000: a socket created before its chmod would be open to everyone.
        let previous = umask(0)
        defer { umask(previous) }
        try await daemon.start()
        umask(previous)
        var info = stat()
        XCTAssertEqual(lstat(daemon.adminUnixPath!, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(String(info.st_mode & 0o7777, radix: 8), "660")
        XCTAssertTrue(daemon.log.contains("admin endpoint on unix:\(daemon.adminUnixPath!) (0660)"), daemon.log)
    }
}
