import Foundation
import VSPCClient
import VSPCCore
import VSPCSim
import VSPCStore
import XCTest

/// The doors people come in by (telnet, SSH, `vspc tail -f`) against the real vspcd and the real OpenSSH client:
/// a reader that falls behind, `vspc forget --force` with people attached, people counted by door, the port named
/// in `vm-connect`, and a command given to ssh. BREAK, `list@` and replaying the scrollback are in
/// DoorTests+Access.swift.
final class DoorTests: DaemonTestCase {
    var children: [ChildProcess] = []
    var sessions: [SSHSession] = []
    var connections: [SimConnection] = []
    var sockets: [StuckSocket] = []
    var work: URL!

    struct Door {
        let daemon: Daemon
        let sshPort: Int
        var authorizedKeysPath: String { daemon.directory.appendingPathComponent("authorized_keys").path }
    }

    override func setUp() async throws {
        try await super.setUp()
        signal(SIGPIPE, SIG_IGN)
        work = FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-door-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        if let run = testRun, run.failureCount + run.unexpectedExceptionCount > 0 {
            for session in sessions {
                print("--- \(session.name): stdout \(String(session.text.suffix(2000)).debugDescription) stderr \(session.err.debugDescription)")
            }
        }
        for child in children {
            kill(child.pid, SIGCONT)
            child.terminate()
        }
        sessions.forEach { $0.stop() }
        connections.forEach { $0.close() }
        sockets.forEach { $0.close() }
        children = []
        sessions = []
        connections = []
        sockets = []
        if let work { try? FileManager.default.removeItem(at: work) }
        try await super.tearDown()
    }

    // MARK: - helpers (shared with DoorTests+Access.swift)

    var knownHosts: String { work.appendingPathComponent("known_hosts").path }

    func makeKey(_ type: String, _ comment: String) throws -> SSHKey {
        try SSHKey.generate(type, comment: comment, in: work)
    }

    /// A daemon with `--ssh`, these keys in its authorized_keys, started and listening for SSH.
    func startDoor(_ keys: [SSHKey], extra: [String] = []) async throws -> Door {
        let daemon = try makeDaemon(extra)
        let door = Door(daemon: daemon, sshPort: try freePort())
        daemon.extraArguments += ["--ssh", "127.0.0.1:\(door.sshPort)"]
        let text = try keys.map { try $0.publicLine + "\n" }.joined()
        try Data(text.utf8).write(to: URL(fileURLWithPath: door.authorizedKeysPath))
        chmod(door.authorizedKeysPath, 0o600)
        try await daemon.start()
        try await daemon.waitForLog("ssh listening on 127.0.0.1:\(door.sshPort)")
        return door
    }

    func connectVM(_ door: Door, _ uuid: String, _ name: String) async throws -> SimulatedVM {
        let vm = try await SimulatedVM.connect(port: door.daemon.proxyPort, uuid: uuid, name: name)
        connections.append(vm)
        _ = try await door.daemon.port(of: uuid)
        return vm
    }

    func telnet(_ door: Door, _ uuid: String) async throws -> SimulatedClient {
        let client = try await SimulatedClient.connect(port: try await door.daemon.port(of: uuid))
        connections.append(client)
        return client
    }

    func sshArguments(_ door: Door, _ key: SSHKey, _ user: String, tty: Bool = false) -> [String] {
        sshOptions(port: door.sshPort, key: key, knownHosts: knownHosts) + [tty ? "-tt" : "-T", "\(user)@127.0.0.1"]
    }

    func banner(_ vm: String) -> String {
        "[vspcd: connected to \(vm) (up); Ctrl-] ? for the menu]\r\n"
    }

    /// An ssh session (no pty: the bytes are the daemon's) attached to `vm`, once its banner has arrived.
    func attach(_ door: Door, _ key: SSHKey, _ vm: String) async throws -> SSHSession {
        let session = try SSHSession("ssh \(vm) (\(key.comment))", sshArguments(door, key, vm))
        sessions.append(session)
        try await session.waitFor(banner(vm))
        return session
    }

    func vspc(_ door: Door, _ arguments: [String]) throws -> ToolResult {
        try Daemon.runTool("vspc", arguments + ["--admin", "127.0.0.1:\(door.daemon.adminPort)"])
    }

    func status(_ door: Door) throws -> DaemonStatus {
        let result = try vspc(door, ["status", "--json"])
        guard result.status == 0 else { throw SimError("vspc status --json: \(result.err)") }
        return try JSONDecoder().decode(DaemonStatus.self, from: result.out)
    }

    /// Waits until `vspc status --json` counts these people by door, and returns that status.
    @discardableResult
    func waitForDoors(_ door: Door, _ expected: [String: Int], timeout: Double = 30) async throws -> DaemonStatus {
        var last: DaemonStatus?
        do {
            try await waitUntil("people by door \(expected)", timeout: timeout) {
                last = try status(door)
                return last?.clientsByDoor == expected
            }
        } catch {
            throw SimError("\(error); last clientsByDoor: \(String(describing: last?.clientsByDoor))")
        }
        return try XCTUnwrap(last)
    }

    /// GET /metrics, the body as text.
    func scrape(_ port: Int) async throws -> String {
        let peer = try await RawPeer.connect(port: port)
        peer.write(raw: Array("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8))
        try await peer.waitForClose(timeout: 30)
        return String(decoding: peer.raw, as: UTF8.self)
    }

    func metric(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    func describe(_ events: [ConsoleEvent]) -> String {
        events.map { "\($0.kind)[\($0.detail ?? "")]" }.joined(separator: ", ")
    }

    /// True once the peer has closed `fd` (what it still holds is read and thrown away), false while it is open.
    func closedByPeer(_ fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { continue }
            if n == 0 { return true }
            let error = errno
            if error == EINTR { continue }
            return error != EAGAIN && error != EWOULDBLOCK
        }
    }

    // MARK: - 13a. a reader that falls behind

    func testAReaderThatFallsBehindIsSkippedOnSSHAndDroppedOnTelnetAndTheVMNeverWaits() async throws {
        let alice = try makeKey("ed25519", "alice@flood")
        let door = try await startDoor([alice], extra: ["--skip-backlog", "65536", "--disconnect-backlog", "65536"])
        let uuid = testUUID(1)
        let vm = try await connectVM(door, uuid, "flood-1")
        let port = try await door.daemon.port(of: uuid)
        // A person whose ssh is stopped (SIGSTOP), and a telnet person who never reads.
        let ssh = try ChildProcess("/usr/bin/ssh", sshArguments(door, alice, "flood-1"), interactive: true)
        children.append(ssh)
        try await waitUntil("the banner on the ssh session") {
            String(decoding: ssh.out, as: UTF8.self).contains(banner("flood-1"))
        }
        let stuck = try StuckSocket(port: port)
        sockets.append(stuck)
        try await waitForDoors(door, ["telnet": 1, "ssh": 1, "tail": 0, "web": 0])
        XCTAssertEqual(kill(ssh.pid, SIGSTOP), 0)

        // The VM floods. After each 2 MiB the daemon answers a barrier on the VM's connection, which it can do
        // only once it has read everything before it: the VM is never held back.
        let line = Array(String(repeating: "flood-output-", count: 5).utf8) + [0x0D, 0x0A]
        let chunk = Array((0..<(256 * 1024 / line.count)).map { _ in line }.joined())
        var sent = 0
        var events: [ConsoleEvent] = []
        func seen(_ kind: EventKind, _ door: String) -> Bool {
            events.contains { $0.kind == kind && ($0.detail ?? "").contains("door=\(door)") }
        }
        while !(seen("client-dropped", "telnet") && seen("client-skipped", "ssh")) {
            guard sent < 96 << 20 else {
                XCTFail("after \(sent) bytes: \(describe(events))")
                break
            }
            for _ in 0..<8 {
                vm.output(chunk)
                sent += chunk.count
            }
            try await vm.barrier(timeout: 60)
            events = (try? Store(path: door.daemon.dbPath, readOnly: true).events(uuid: uuid)) ?? events
        }
        XCTAssertFalse(vm.closed)

        // The telnet person was disconnected; the ssh person resumes and finds the notice, then live output.
        try await waitUntil("the telnet person's connection to close") { closedByPeer(stuck.fd) }
        XCTAssertEqual(kill(ssh.pid, SIGCONT), 0)
        let marker = "\r\nafter-the-flood\r\n"
        vm.output(marker)
        try await waitUntil("the marker on the resumed ssh session", timeout: 180) {
            String(decoding: ssh.out.suffix(4096), as: UTF8.self).contains(marker)
        }
        XCTAssertTrue(ssh.isRunning, "the ssh session ended: \(ssh.err)")
        let text = String(decoding: ssh.out, as: UTF8.self)
        let notice = try XCTUnwrap(text.range(of: " skipped, you fell behind]\r\n"), "no skip notice on the ssh session")
        XCTAssertTrue(text[..<notice.lowerBound].suffix(40).contains("\r\n[vspcd: "), String(text[..<notice.upperBound].suffix(80)))
        XCTAssertLessThan(ssh.out.count, sent, "the ssh session skipped nothing")

        events = try await waitForEvents(door.daemon, uuid: uuid, "the drop and the skip") { _ in true }
        let drops = events.filter { $0.kind == "client-dropped" }
        XCTAssertEqual(drops.count, 1, describe(events))
        XCTAssertTrue(drops.first?.detail?.hasPrefix("stopped reading; door=telnet") == true, describe(events))
        let skips = events.filter { $0.kind == "client-skipped" }
        XCTAssertEqual(skips.count, 1, "one record a minute at most: \(describe(events))")
        let skip = try XCTUnwrap(skips.first?.detail)
        XCTAssertTrue(skip.contains(" skipped, fell behind; door=ssh "), skip)
        XCTAssertTrue(skip.contains("key=alice@flood \(try alice.fingerprint)"), skip)
        let listed = try await door.daemon.list()
        XCTAssertTrue(listed.contains { $0.uuid == uuid && $0.connected }, "\(listed)")
    }

    // MARK: - 13b. vspc forget --force with people attached

    func testForceForgetClosesTheVMAndItsPeopleInOrderAndCountsThem() async throws {
        let alice = try makeKey("ed25519", "alice@forget")
        let metricsPort = try freePort()
        let door = try await startDoor([alice], extra: ["--metrics", "127.0.0.1:\(metricsPort)"])
        let uuid = testUUID(2)
        let vm = try await connectVM(door, uuid, "forget-2")
        let person = try await telnet(door, uuid)
        let session = try await attach(door, alice, "forget-2")
        try await waitForDoors(door, ["telnet": 1, "ssh": 1, "tail": 0, "web": 0])

        let forced = try vspc(door, ["forget", "forget-2", "--force"])
        XCTAssertEqual(forced.status, 0, forced.err)
        try await vm.waitForClose(timeout: 30)
        try await person.waitForClose(timeout: 30)
        _ = try await session.waitForExit()

        let events = try await waitForEvents(door.daemon, uuid: uuid, "port-forgotten") {
            $0.contains { $0.kind == "port-forgotten" }
        }
        let ending = events.filter { ["vm-disconnect", "client-dropped", "port-forgotten"].contains($0.kind) }
        XCTAssertEqual(ending.map(\.kind), ["vm-disconnect", "client-dropped", "client-dropped", "port-forgotten"], describe(events))
        XCTAssertEqual(ending.first?.detail, "forgotten by vspc forget --force", describe(events))
        let drops = ending.filter { $0.kind == "client-dropped" }.compactMap(\.detail)
        for detail in drops { XCTAssertTrue(detail.hasPrefix("forgotten by vspc forget --force; door="), detail) }
        let doors = drops.map { $0.components(separatedBy: "door=").last?.prefix { $0 != " " } ?? "" }
        XCTAssertEqual(doors.map(String.init).sorted(), ["ssh", "telnet"], drops.description)

        // The same, in order, in `vspc history`.
        let history = try Daemon.run("vspc", ["history", uuid, "--db", door.daemon.dbPath])
        XCTAssertEqual(history.status, 0, history.err)
        let kinds = history.out.split(separator: "\n").compactMap { line in
            ["vm-disconnect", "client-dropped", "port-forgotten"].first { line.contains(" \($0) ") || line.contains(" \($0):") }
        }
        XCTAssertEqual(kinds, ["vm-disconnect", "client-dropped", "client-dropped", "port-forgotten"], history.out)
        XCTAssertEqual(occurrences(of: "forgotten by vspc forget --force", in: history.out), 3, history.out)

        // The counters, scraped until they show the forget (the snapshot may trail the events by a moment).
        var metrics = ""
        let dropped = "vspc_clients_dropped_total{reason=\"forgotten\"}"
        let disconnects = "vspc_vm_disconnects_total{reason=\"forgotten\"}"
        let deadline = Date().addingTimeInterval(30)
        repeat {
            metrics = try await scrape(metricsPort)
            if metric(metrics, dropped) == 2, metric(metrics, disconnects) == 1 { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        } while Date() < deadline
        XCTAssertEqual(metric(metrics, dropped), 2, metrics)
        XCTAssertEqual(metric(metrics, disconnects), 1, metrics)
    }

    // MARK: - 13c. people by door

    func testStatusCountsPeopleByDoor() async throws {
        let alice = try makeKey("ed25519", "alice@status")
        let door = try await startDoor([alice])
        let uuid = testUUID(3)
        _ = try await connectVM(door, uuid, "counted-3")
        _ = try await telnet(door, uuid)
        _ = try await attach(door, alice, "counted-3")
        let tail = try ChildProcess(Daemon.binary("vspc"),
                                    ["tail", "counted-3", "-f", "--admin", "127.0.0.1:\(door.daemon.adminPort)"], interactive: false)
        children.append(tail)
        let status = try await waitForDoors(door, ["telnet": 1, "ssh": 1, "tail": 1, "web": 0])
        XCTAssertEqual(status.clientsByDoor, ["telnet": 1, "ssh": 1, "tail": 1, "web": 0])
        XCTAssertEqual(status.telnetClients, 1)
        XCTAssertEqual(status.sshClients, 1)
        XCTAssertEqual(status.tailFollowers, 1)
        XCTAssertTrue(tail.isRunning, tail.err)
    }

    // MARK: - 13d. the port in vm-connect

    func testVMConnectNamesThePortAssignedPastATakenOne() async throws {
        let daemon = try await startDaemon()
        let blocker = try StuckSocket(listenOn: daemon.portRange.lowerBound)
        sockets.append(blocker)
        let uuid = testUUID(4)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "skipper-4")
        connections.append(vm)
        let port = try await daemon.port(of: uuid)
        XCTAssertEqual(port, daemon.portRange.lowerBound + 1)
        let events = try await waitForEvents(daemon, uuid: uuid, "vm-connect") { $0.contains { $0.kind == "vm-connect" } }
        let connect = events.filter { $0.kind == "vm-connect" }
        XCTAssertEqual(connect.count, 1, describe(events))
        XCTAssertEqual(connect.first?.detail, "port \(daemon.portRange.lowerBound + 1)", describe(events))
    }

    // MARK: - 13e. a command given to ssh

    func testSSHWithACommandIsRefusedWithExitStatusOne() async throws {
        let alice = try makeKey("ed25519", "alice@command")
        let door = try await startDoor([alice])
        let vm = try await connectVM(door, testUUID(5), "cmd-5")
        let result = try runProgram("/usr/bin/ssh", sshArguments(door, alice, "cmd-5") + ["somecommand"])
        XCTAssertEqual(result.status, 1, "stdout \(result.text.debugDescription) stderr \(result.err.debugDescription)")
        let message = "vspcd: a console runs no command (got \"somecommand\"); use ssh VM@host without one"
        XCTAssertTrue((result.text + result.err).contains(message), "stdout \(result.text.debugDescription) stderr \(result.err.debugDescription)")
        XCTAssertEqual(vm.data, [], "the command reached the VM")
        let listed = try await door.daemon.list()
        XCTAssertTrue(listed.contains { $0.uuid == vm.uuid && $0.connected })
    }
}
