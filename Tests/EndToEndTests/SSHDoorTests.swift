import Foundation
import VSPCCore
import VSPCSim
import VSPCStore
import XCTest

/// The SSH front door end to end: the real OpenSSH client (`/usr/bin/ssh`) with keys made by `ssh-keygen`, against
/// the real vspcd. Access (read-write, read-only, `vms=`, unknown and RSA keys, the host key, `list@`) is here; the
/// escape menu, notices, audit, telnet-port modes, the Unix admin socket and key reloads are in
/// SSHDoorTests+Sessions.swift.
final class SSHDoorTests: DaemonTestCase {
    var sessions: [SSHSession] = []
    var connections: [SimConnection] = []
    var work: URL!

    /// A daemon with its SSH port.
    struct Door {
        let daemon: Daemon
        let sshPort: Int
        var authorizedKeysPath: String { daemon.directory.appendingPathComponent("authorized_keys").path }
        var hostKeyPath: String { daemon.directory.appendingPathComponent("ssh_host_ed25519_key").path }
    }

    override func setUp() async throws {
        try await super.setUp()
        // Writing to the stdin of an ssh that has exited must not end the test run.
        signal(SIGPIPE, SIG_IGN)
        work = FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-ssh-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    /// The sessions and connections go first; the base class then prints the daemons' logs and removes them.
    override func tearDown() async throws {
        if let run = testRun, run.failureCount + run.unexpectedExceptionCount > 0 {
            for session in sessions {
                print("--- \(session.name): stdout \(session.text.debugDescription) stderr \(session.err.debugDescription)")
            }
        }
        sessions.forEach { $0.stop() }
        connections.forEach { $0.close() }
        sessions = []
        connections = []
        if let work { try? FileManager.default.removeItem(at: work) }
        try await super.tearDown()
    }

    // MARK: - helpers (shared with SSHDoorTests+Sessions.swift)

    var knownHosts: String { work.appendingPathComponent("known_hosts").path }

    func makeKey(_ type: String, _ comment: String) throws -> SSHKey {
        try SSHKey.generate(type, comment: comment, in: work)
    }

    /// `options key-line`, an authorized_keys entry.
    func entry(_ key: SSHKey, options: String? = nil) throws -> String {
        try (options.map { $0 + " " } ?? "") + key.publicLine
    }

    /// Starts a daemon with `--ssh` and these authorized_keys lines in its default file (beside the database), and
    /// waits until the SSH port listens.
    func startDoor(_ authorizedKeys: [String], extra: [String] = [], adminUnixSocket: Bool = false) async throws -> Door {
        let daemon = try makeDaemon(extra)
        let door = Door(daemon: daemon, sshPort: try freePort())
        daemon.extraArguments += ["--ssh", "127.0.0.1:\(door.sshPort)"]
        if adminUnixSocket { daemon.adminUnixPath = daemon.directory.appendingPathComponent("admin.sock").path }
        try writeAuthorizedKeys(door, authorizedKeys)
        try await daemon.start()
        try await waitForLog(door, "ssh listening on 127.0.0.1:\(door.sshPort)")
        return door
    }

    func writeAuthorizedKeys(_ door: Door, _ lines: [String]) throws {
        let text = lines.map { $0 + "\n" }.joined()
        try Data(text.utf8).write(to: URL(fileURLWithPath: door.authorizedKeysPath))
        chmod(door.authorizedKeysPath, 0o600)
    }

    /// Waits until the daemon's log holds `text` at least `count` times.
    func waitForLog(_ door: Door, _ text: String, count: Int = 1, timeout: Double = 30) async throws {
        try await door.daemon.waitForLog(text, count: count, timeout: timeout)
    }

    /// A VM that is connected and listed.
    func connectVM(_ door: Door, _ uuid: String, _ name: String) async throws -> SimulatedVM {
        let vm = try await SimulatedVM.connect(port: door.daemon.proxyPort, uuid: uuid, name: name)
        connections.append(vm)
        _ = try await door.daemon.port(of: uuid)
        return vm
    }

    /// A person's telnet client on the VM's port.
    func telnet(_ door: Door, _ uuid: String) async throws -> SimulatedClient {
        let client = try await SimulatedClient.connect(port: try await door.daemon.port(of: uuid))
        connections.append(client)
        return client
    }

    /// An interactive ssh as `user` (`-tt`: a pty is asked for; `-T`: none, the bytes are raw).
    func ssh(_ door: Door, _ key: SSHKey, _ user: String, tty: Bool = true) throws -> SSHSession {
        let session = try SSHSession("ssh \(user) (\(key.comment))",
                                     sshOptions(port: door.sshPort, key: key, knownHosts: knownHosts)
                                         + [tty ? "-tt" : "-T", "\(user)@127.0.0.1"])
        sessions.append(session)
        return session
    }

    /// The notice a session gets when it attaches.
    func banner(_ vm: String, up: Bool = true, readOnly: Bool = false) -> String {
        "[vspcd: connected to \(vm) (\(up ? "up" : "down")); Ctrl-] ? for the menu\(readOnly ? "; read-only" : "")]\r\n"
    }

    /// An ssh session attached to `vm`, once its banner has arrived.
    func attach(_ door: Door, _ key: SSHKey, _ vm: String, tty: Bool = true, readOnly: Bool = false) async throws -> SSHSession {
        let session = try ssh(door, key, vm, tty: tty)
        try await session.waitFor(banner(vm, readOnly: readOnly))
        return session
    }

    /// `ssh -T user@host` with no input, to its end.
    func sshRun(_ door: Door, _ key: SSHKey, _ user: String, knownHosts: String? = nil,
                strictHostKeyChecking: String = "no") throws -> ToolResult {
        try runProgram("/usr/bin/ssh", sshOptions(port: door.sshPort, key: key, knownHosts: knownHosts ?? self.knownHosts,
                                                  strictHostKeyChecking: strictHostKeyChecking)
                       + ["-T", "\(user)@127.0.0.1"])
    }

    /// Waits until the daemon has read everything the session typed so far: the menu's help comes back after it.
    func sshBarrier(_ session: SSHSession) async throws {
        let marker = "vspcd escape menu: Ctrl-] followed by"
        let seen = occurrences(of: marker, in: session.text)
        session.menu("?")
        try await session.waitFor(marker, count: seen + 1)
    }

    /// Waits until the VM has received exactly `expected` (and fails if it received something else).
    func expectVMData(_ vm: SimulatedVM, _ expected: String, _ what: String) async throws {
        let bytes = Array(expected.utf8)
        try await vm.wait(what, timeout: 30) { vm.data.count >= bytes.count }
        XCTAssertEqual(String(decoding: vm.data, as: UTF8.self), expected, what)
    }

    // MARK: - 1. read-write

    func testReadWriteKeyPassesBytesRawBothWays() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let door = try await startDoor([try entry(alice)])
        let vm = try await connectVM(door, testUUID(1), "web-1")
        // -T: no pty, so nothing on the client's side translates; the bytes are the daemon's.
        let session = try await attach(door, alice, "web-1", tty: false)

        let output = patternBytes(8192, seed: 11)
        XCTAssertTrue(output.contains(0x00) && output.contains(0xFF) && output.contains(0x1D))
        vm.output(output)
        let opening = Array(("\r\n" + banner("web-1")).utf8)
        try await session.waitForOutput("the VM's \(output.count) bytes") { $0.count >= opening.count + output.count }
        XCTAssertEqual(session.out.count, opening.count + output.count)
        XCTAssertEqual(Array(session.out.prefix(opening.count)), opening)
        XCTAssertEqual(Array(session.out.dropFirst(opening.count)), output, "VM output on the ssh session, byte for byte")

        // Everything but Ctrl-] (the menu's escape) reaches the VM as typed, 0x00 and 0xFF included.
        let typed = patternBytes(4096, seed: 12).filter { $0 != 0x1D }
        XCTAssertTrue(typed.contains(0x00) && typed.contains(0xFF))
        session.type(typed)
        try await vm.wait("the typed bytes at the VM", timeout: 30) { vm.data.count >= typed.count }
        XCTAssertEqual(vm.data, typed, "typed bytes at the VM, byte for byte")
        XCTAssertTrue(session.isRunning)
    }

    // MARK: - 2. read-only

    func testReadOnlyKeyWatchesButNeverTypes() async throws {
        let carol = try makeKey("ecdsa", "carol@ops")
        let door = try await startDoor([try entry(carol, options: "read-only")])
        let uuid = testUUID(2)
        let vm = try await connectVM(door, uuid, "web-2")
        let session = try await attach(door, carol, "web-2", readOnly: true)
        vm.output("login: ")
        try await session.waitFor("login: ")

        let notice = "\r\n[vspcd: read-only: what you type does not reach the VM]\r\n"
        session.type("root\r")
        try await session.waitFor(notice)
        session.type("reboot\r")
        session.type([0x1D, 0x1D]) // Ctrl-] Ctrl-] would send one Ctrl-] on a read-write key
        try await sshBarrier(session)
        XCTAssertEqual(occurrences(of: notice, in: session.text), 1, "one notice, the first time only")

        // Nothing of it reached the VM: what a read-write person types after it arrives alone.
        let person = try await telnet(door, uuid)
        person.send(Array("marker".utf8))
        try await expectVMData(vm, "marker", "only the telnet person's input at the VM")

        vm.output("still watching\r\n")
        try await session.waitFor("still watching\r\n")
        XCTAssertTrue(session.isRunning)
    }

    // MARK: - 3. vms= globs

    func testKeyLimitedByVMGlobsReachesOnlyThoseAndRefusalsLookAlike() async throws {
        let dave = try makeKey("ed25519", "dave@ops")
        let door = try await startDoor([try entry(dave, options: "vms=\"web-*\"")])
        let web = try await connectVM(door, testUUID(31), "web-1")
        let dbUUID = testUUID(32)
        _ = try await connectVM(door, dbUUID, "db-0")

        let session = try await attach(door, dave, "web-1", tty: false)
        web.output("web console\r\n")
        try await session.waitFor("web console\r\n")

        let refused = try sshRun(door, dave, "db-0")
        XCTAssertEqual(refused.status, 1, refused.err)
        XCTAssertEqual(refused.text, "vspcd: no console db-0 for this key\n")
        let byUUID = try sshRun(door, dave, dbUUID)
        XCTAssertEqual(byUUID.status, 1, byUUID.err)
        XCTAssertEqual(byUUID.text, "vspcd: no console \(dbUUID) for this key\n")
        let missing = try sshRun(door, dave, "db-9")
        XCTAssertEqual(missing.status, 1, missing.err)
        XCTAssertEqual(missing.text, "vspcd: no console db-9 for this key\n",
                       "a VM that does not exist is refused exactly like one the key may not reach")

        // Refusals are recorded, the user name quoted (issue 14, item 9); one for a name that matches a VM is kept
        // under that VM (`vspc history --refused`), though the person was told nothing more.
        let fingerprint = try dave.fingerprint
        let deadline = Date().addingTimeInterval(30)
        var refusals: [ConsoleEvent] = []
        while refusals.count < 3, Date() < deadline {
            refusals = (try? Store(path: door.daemon.dbPath, readOnly: true).events(uuid: nil))?
                .filter { $0.kind == "client-refused" } ?? []
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        XCTAssertEqual(refusals.map { $0.detail ?? "" }.sorted(), [
            "door=ssh user=\"\(dbUUID)\" key=dave@ops \(fingerprint)",
            "door=ssh user=\"db-0\" key=dave@ops \(fingerprint)",
            "door=ssh user=\"db-9\" key=dave@ops \(fingerprint)",
        ].sorted())
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: refusals.map { ($0.user ?? "", $0.uuid) }),
                       [dbUUID: UUIDSpelling.normalize(dbUUID), "db-0": UUIDSpelling.normalize(dbUUID), "db-9": nil])
        XCTAssertTrue(refusals.allSatisfy { ($0.peer ?? "").hasPrefix("127.0.0.1:") }, "\(refusals)")
        XCTAssertTrue(session.isRunning)
    }

    // MARK: - 4. unknown and RSA keys

    func testUnknownKeyIsRefusedAtAuthenticationAndAnRSAKeyIsRefusedWithAReason() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let mallory = try makeKey("ed25519", "mallory@nowhere")
        let frank = try makeKey("rsa", "frank@old")
        let door = try await startDoor([try entry(alice), try entry(frank)])
        _ = try await connectVM(door, testUUID(4), "web-4")

        let unknown = try sshRun(door, mallory, "web-4")
        XCTAssertEqual(unknown.status, 255, "ssh's own failure, not a session's exit status: \(unknown.err)")
        XCTAssertEqual(unknown.text, "")
        XCTAssertTrue(unknown.err.contains("Permission denied"), unknown.err)
        try await waitForLog(door, "key ssh-ed25519 \(try mallory.fingerprint) is not in the authorized keys")

        // The RSA line is refused when the file is read, saying why, with its line number...
        try await waitForLog(door, "line 2: RSA keys are not supported by this server; use ed25519 or ECDSA")
        XCTAssertTrue(door.daemon.log.contains("1 key(s) accepted, 1 refused"), door.daemon.log)
        // ... and a client that holds only that key is refused at authentication, with a line saying why.
        let rsa = try sshRun(door, frank, "web-4")
        XCTAssertEqual(rsa.status, 255, rsa.err)
        XCTAssertEqual(rsa.text, "")
        try await waitForLog(door, "offered no ed25519 or ECDSA key: no key at all, or only keys of a type this server does not support such as RSA; use an ed25519 or ECDSA key")

        // The authorized key still gets in.
        let ok = try sshRun(door, alice, "list")
        XCTAssertEqual(ok.status, 0, ok.err)
    }

    // MARK: - 5. host key

    func testHostKeyIsPrivateAndSurvivesARestart() async throws {
        let alice = try makeKey("ed25519", "alice@laptop")
        let door = try await startDoor([try entry(alice)])
        var info = stat()
        XCTAssertEqual(stat(door.hostKeyPath, &info), 0, "the host key is created beside the database")
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        let keyFile = try Data(contentsOf: URL(fileURLWithPath: door.hostKeyPath))

        let first = try sshRun(door, alice, "list", strictHostKeyChecking: "accept-new")
        XCTAssertEqual(first.status, 0, first.err)
        // known_hosts now holds the daemon's public key, the one in the host key file.
        let recorded = try String(contentsOfFile: knownHosts, encoding: .utf8)
        let derived = try runProgram("/usr/bin/ssh-keygen", ["-y", "-f", door.hostKeyPath])
        XCTAssertEqual(derived.status, 0, derived.err)
        let publicKey = derived.text.split(separator: " ").prefix(2).joined(separator: " ")
        XCTAssertTrue(publicKey.hasPrefix("ssh-ed25519 "), derived.text)
        XCTAssertEqual(recorded.trimmingCharacters(in: .whitespacesAndNewlines), "[127.0.0.1]:\(door.sshPort) \(publicKey)")

        try await door.daemon.stop()
        try await door.daemon.start()
        try await waitForLog(door, "ssh listening on 127.0.0.1:\(door.sshPort)", count: 2)

        let again = try sshRun(door, alice, "list", strictHostKeyChecking: "yes")
        XCTAssertEqual(again.status, 0, "the known_hosts entry from before the restart still matches: \(again.err)")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: door.hostKeyPath)), keyFile, "the host key file is reused as it is")
        XCTAssertEqual(stat(door.hostKeyPath, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        // The check is real: with an empty known_hosts the same strict client refuses the daemon.
        let empty = work.appendingPathComponent("empty_known_hosts").path
        _ = FileManager.default.createFile(atPath: empty, contents: nil)
        let stranger = try sshRun(door, alice, "list", knownHosts: empty, strictHostKeyChecking: "yes")
        XCTAssertEqual(stranger.status, 255)
        XCTAssertTrue(stranger.err.contains("Host key verification failed"), stranger.err)
    }

    // MARK: - 6. list@

    func testListPrintsThePermittedVMsAndExits() async throws {
        let dave = try makeKey("ed25519", "dave@ops")
        let root = try makeKey("ecdsa", "root@admin")
        let door = try await startDoor([try entry(dave, options: "vms=\"web-*\""), try entry(root)])
        let web1 = testUUID(61), web2 = testUUID(62), db0 = testUUID(63)
        _ = try await connectVM(door, web1, "web-1")
        let down = try await connectVM(door, web2, "web-2")
        _ = try await connectVM(door, db0, "db-0")
        down.close()
        try await door.daemon.waitForList("web-2 down") { $0.first { $0.uuid == web2 }?.connected == false }

        func line(_ name: String, _ uuid: String, _ state: String) -> String {
            "\(name)\t\(UUIDSpelling.classic(uuid))\t\(state)"
        }
        func lines(_ result: ToolResult) -> [String] {
            // With a pty lines end in CRLF, without one in LF. (Split by unicode scalars: for Swift's String, "\r\n"
            // is one Character.)
            result.text.unicodeScalars.split(separator: "\n").map { String(String.UnicodeScalarView($0)).replacingOccurrences(of: "\r", with: "") }
        }
        let limited = try sshRun(door, dave, "list")
        XCTAssertEqual(limited.status, 0, limited.err)
        XCTAssertEqual(lines(limited), [line("web-1", web1, "up"), line("web-2", web2, "down")])
        XCTAssertEqual(limited.out.last, UInt8(ascii: "\n"))
        XCTAssertFalse(limited.out.contains(0x0D), "without a pty, lines end in LF only, for scripts")

        let everything = try sshRun(door, root, "list")
        XCTAssertEqual(everything.status, 0, everything.err)
        XCTAssertEqual(lines(everything), [line("db-0", db0, "up"), line("web-1", web1, "up"), line("web-2", web2, "down")])
    }
}
