import Foundation
import VSPCSim
import XCTest

/// The README's "Try it in five minutes", run as written with the built binaries: the commands are read from the
/// README (between `<!-- try-it:begin -->` and `<!-- try-it:end -->`), and each runs with its own arguments plus
/// only what points it at this test's daemon (its free ports and folder instead of 6779, 6780, 6781 and 20000).
final class TryItTests: DaemonTestCase {
    var children: [ChildProcess] = []
    var connections: [SimConnection] = []
    var sessions: [SSHSession] = []

    override func setUp() async throws {
        try await super.setUp()
        signal(SIGPIPE, SIG_IGN)
    }

    override func tearDown() async throws {
        if let run = testRun, run.failureCount + run.unexpectedExceptionCount > 0 {
            for child in children { print("--- vspc-vmsim: stdout \(String(decoding: child.out, as: UTF8.self).debugDescription) stderr \(child.err.debugDescription)") }
            for session in sessions { print("--- \(session.name): stdout \(session.text.debugDescription) stderr \(session.err.debugDescription)") }
        }
        sessions.forEach { $0.stop() }
        connections.forEach { $0.close() }
        children.forEach { $0.terminate() }
        sessions = []
        connections = []
        children = []
        try await super.tearDown()
    }

    /// The shell commands of the section's ```sh blocks, in order.
    static func readmeCommands() throws -> [String] {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        guard let begin = text.range(of: "<!-- try-it:begin -->"), let end = text.range(of: "<!-- try-it:end -->"),
              begin.upperBound < end.lowerBound else { throw SimError("README.md has no try-it markers") }
        var commands: [String] = []
        var inBlock = false
        for line in text[begin.upperBound..<end.lowerBound].split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") { inBlock = line == "```sh"; continue }
            if inBlock, !line.trimmingCharacters(in: .whitespaces).isEmpty { commands.append(String(line)) }
        }
        return commands
    }

    /// The section, command by command; the walk-through below relies on this order.
    static let expectedShapes = [
        "ssh-keygen ", "cp ", "swift run vspcd ", "swift run vspc-vmsim ", "swift run vspc list",
        "swift run vspc tail ", "telnet ", "ssh ", "swift run vspc history ",
    ]

    /// A README command's words after `prefix` (no shell quoting in the section except `''`, the empty word).
    static func words(_ command: String, after prefix: String) throws -> [String] {
        guard command.hasPrefix(prefix) else { throw SimError("\(command.debugDescription) does not start with \(prefix)") }
        return command.dropFirst(prefix.count).split(separator: " ").map { $0 == "''" ? "" : String($0) }
    }

    func testTheReadmeWalkThrough() async throws {
        let commands = try Self.readmeCommands()
        XCTAssertEqual(commands.count, Self.expectedShapes.count, "\(commands)")
        for (command, shape) in zip(commands, Self.expectedShapes) { XCTAssertTrue(command.hasPrefix(shape), command) }
        guard commands.count == Self.expectedShapes.count else { return }
        let haveSSH = FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen")
        if !haveSSH {
            // Under CI nothing is skipped; elsewhere the ssh step is, with a line naming the package.
            if ProcessInfo.processInfo.environment["CI"] != nil {
                XCTFail("/usr/bin/ssh or ssh-keygen is missing under CI: install Debian's openssh-client")
            } else {
                print("TryItTests: skipping the walk-through's ssh step: install Debian's openssh-client")
            }
        }

        // Terminal 1: the key, authorized_keys beside the database, the daemon with the SSH door.
        let daemon = try makeDaemon(portRangeSize: 20)
        let dir = daemon.directory
        let keyPath = dir.appendingPathComponent("try_key").path
        var sshPort = 0
        if haveSSH {
            let keygen = try Self.words(commands[0], after: "ssh-keygen ").map { $0 == "try_key" ? keyPath : $0 }
            let made = try runProgram("/usr/bin/ssh-keygen", keygen)
            XCTAssertEqual(made.status, 0, made.err)
            XCTAssertEqual(try Self.words(commands[1], after: "cp "), ["try_key.pub", "authorized_keys"])
            try FileManager.default.copyItem(atPath: keyPath + ".pub", toPath: dir.appendingPathComponent("authorized_keys").path)
            let daemonArguments = try Self.words(commands[2], after: "swift run vspcd ")
            XCTAssertEqual(daemonArguments, ["--ssh", ":6781"])
            sshPort = try freePort()
            daemon.extraArguments += daemonArguments.map { $0 == ":6781" ? "127.0.0.1:\(sshPort)" : $0 }
        }
        try await daemon.start()
        if haveSSH { try await daemon.waitForLog("ssh listening on 127.0.0.1:\(sshPort)") }
        let admin = ["--admin", daemon.adminArgument]

        // Terminal 2: three VMs that boot, and migrate every 30 s.
        let simArguments = try Self.words(commands[3], after: "swift run vspc-vmsim ")
        let sim = try ChildProcess(Daemon.binary("vspc-vmsim"), simArguments + ["--port", "\(daemon.proxyPort)"], interactive: false)
        children.append(sim)
        func simOut() -> String { String(decoding: sim.out, as: UTF8.self) }
        try await waitUntil("vspc-vmsim to connect its VMs") { simOut().contains("3 VMs connected; Ctrl-C to stop") }
        for i in 0..<3 { XCTAssertTrue(simOut().contains("web-\(i): connected (uuid \(SimFleet.uuid(key: "web", index: i)))"), simOut()) }

        // vspc list: web-0, web-1, web-2 on the first three ports ("20000, 20001 and 20002 on a fresh database").
        let first = daemon.portRange.lowerBound
        try await daemon.waitForList("the three VMs, saved") { vms in vms.count == 3 && vms.allSatisfy { $0.saved != false } }
        let list = try Daemon.runTool("vspc", try Self.words(commands[4], after: "swift run vspc ") + admin)
        XCTAssertEqual(list.status, 0, list.err)
        XCTAssertEqual(list.lines, (0..<3).map { i -> String in
            let uuid = Array(SimFleet.uuid(key: "web", index: i))
            return "web-\(i):\(String(uuid[0..<16]))-\(String(uuid[16...])):\(first + i)"
        })

        // vspc tail web-0 -n 3: the end of the boot.
        let tailArguments = try Self.words(commands[5], after: "swift run vspc ") + admin
        var tail = ""
        try await waitUntil("web-0's boot to reach the login prompt") {
            tail = try Daemon.runTool("vspc", tailArguments).text
            return tail.hasSuffix("web-0 login: ")
        }
        XCTAssertEqual(tail, "Debian GNU/Linux 12 web-0 ttyS0\r\n\r\nweb-0 login: ")

        // telnet 127.0.0.1 20000: Enter, and web-0 answers with its login prompt.
        XCTAssertEqual(try Self.words(commands[6], after: "telnet "), ["127.0.0.1", "20000"])
        let telnet = try await SimulatedClient.connect(port: first)
        connections.append(telnet)
        func telnetText() -> String { String(decoding: telnet.data, as: UTF8.self) }
        telnet.send(Array("\r\n".utf8))
        try await telnet.wait("web-0's login prompt on telnet", timeout: 30) { telnetText().contains("\r\nweb-0 login: ") }

        // ssh ... web-1@127.0.0.1: Enter, web-1's prompt; Ctrl-] then `.` leaves.
        if haveSSH {
            let sshWords = try Self.words(commands[7], after: "ssh ")
            XCTAssertEqual(sshWords.last, "web-1@127.0.0.1")
            let knownHosts = dir.appendingPathComponent("known_hosts").path
            let arguments = ["-F", "/dev/null", "-o", "UserKnownHostsFile=\(knownHosts)", "-o", "BatchMode=yes", "-e", "none"]
                + sshWords.map { $0 == "6781" ? "\(sshPort)" : $0 == "try_key" ? keyPath : $0 }
            let ssh = try SSHSession("ssh web-1", arguments)
            sessions.append(ssh)
            ssh.type("\r")
            try await ssh.waitFor("\r\nweb-1 login: ")
            ssh.menu(".")
            let sshStatus = try await ssh.waitForExit()
            XCTAssertEqual(sshStatus, 0)
        } else {
            print("TryItTests: /usr/bin/ssh or ssh-keygen missing; the ssh step is skipped")
        }

        // The vMotion round (every 30 s): the person on telnet stays attached and web-0 still answers.
        try await waitUntil("a round of vMotions", timeout: 90) { simOut().contains("migrated 3 VMs") }
        XCTAssertFalse(telnet.closed)
        let prompts = occurrences(of: "web-0 login: ", in: telnetText())
        telnet.send(Array("\r\n".utf8))
        try await telnet.wait("web-0's prompt after the vMotion", timeout: 30) {
            occurrences(of: "web-0 login: ", in: telnetText()) > prompts
        }
        telnet.close()

        // vspc history web-0: the connection, the port, the telnet session, the vMotion.
        let historyArguments = try Self.words(commands[8], after: "swift run vspc ") + admin
        var history = ""
        try await waitUntil("the telnet session's client-detach in web-0's history") {
            history = try Daemon.runTool("vspc", historyArguments).text
            return history.contains("client-detach")
        }
        for kind in ["vm-connect", "port-assigned", "client-attach", "client-detach",
                     "vmotion-begin", "vmotion-goahead", "vmotion-peer", "vmotion-complete"] {
            XCTAssertTrue(history.contains("  \(kind)  "), "\(kind) missing from:\n\(history)")
        }

        // Ctrl-C: the VMs close and the simulator prints its summary.
        kill(sim.pid, SIGINT)
        try await waitUntil("vspc-vmsim to stop") { !sim.isRunning }
        XCTAssertEqual(sim.exitStatus, 0, sim.err)
        XCTAssertTrue(simOut().contains("summary: 3 of 3 VMs connected; refusals 0, unreachable 0 times, closed by vspcd 0 times, reconnections 0, vMotions 3"), simOut())
    }

    /// A second fleet beside the first gets its own uuids; when the daemon goes away the VMs are reported closed
    /// and reconnect, with back-off, once it is back.
    func testSecondFleetAndReconnect() async throws {
        XCTAssertNotEqual(SimFleet.uuid(key: "web", index: 0), SimFleet.uuid(key: "db", index: 0))
        let daemon = try await startDaemon(portRangeSize: 20)
        let web = try ChildProcess(Daemon.binary("vspc-vmsim"), ["run", "--name", "web", "--count", "1", "--port", "\(daemon.proxyPort)"], interactive: false)
        children.append(web)
        try await waitUntil("web to connect") { String(decoding: web.out, as: UTF8.self).contains("1 VMs connected") }
        let db = try ChildProcess(Daemon.binary("vspc-vmsim"), ["run", "--name", "db", "--count", "1", "--port", "\(daemon.proxyPort)"], interactive: false)
        children.append(db)
        func dbOut() -> String { String(decoding: db.out, as: UTF8.self) }
        try await waitUntil("db to connect") { dbOut().contains("1 VMs connected") }
        try await daemon.waitForList("web-0 and db-0") { Set($0.map(\.name)) == ["web-0", "db-0"] }

        // The daemon stops: db-0 is closed, retries while it is away, and reconnects when it is back.
        try await daemon.stop()
        try await waitUntil("db-0 to notice the close") { dbOut().contains("db-0: closed by vspcd; retrying in 1 s") }
        try await waitUntil("db-0 to find vspcd unreachable") {
            dbOut().contains("db-0: vspcd unreachable at 127.0.0.1:\(daemon.proxyPort) (Connection refused); retrying in 2 s")
        }
        try await daemon.start()
        try await waitUntil("db-0 to reconnect", timeout: 60) { dbOut().contains("db-0: reconnected after ") }
        try await daemon.waitForList("db-0 back") { $0.contains { $0.name == "db-0" && $0.connected } }
    }

    /// A fleet whose uuids another open connection carries (`--uuid-seed web` gives web-0's uuid to dup-0) is
    /// refused by the daemon, and says so instead of counting the VM as connected.
    func testCollidingFleetIsReportedRefused() async throws {
        let daemon = try await startDaemon(portRangeSize: 20)
        let web = try ChildProcess(Daemon.binary("vspc-vmsim"), ["run", "--name", "web", "--port", "\(daemon.proxyPort)"], interactive: false)
        children.append(web)
        try await waitUntil("web to connect") { String(decoding: web.out, as: UTF8.self).contains("1 VMs connected") }
        let dup = try ChildProcess(Daemon.binary("vspc-vmsim"),
                                   ["run", "--name", "dup", "--uuid-seed", "web", "--port", "\(daemon.proxyPort)"], interactive: false)
        children.append(dup)
        func dupOut() -> String { String(decoding: dup.out, as: UTF8.self) }
        try await waitUntil("dup-0 to be refused") { dupOut().contains("0 of 1 VMs connected; refusals 1,") }
        XCTAssertTrue(dupOut().hasPrefix("dup-0: refused by vspcd (closed right after identifying; is uuid \(SimFleet.uuid(key: "web", index: 0)) in use by another VM?); retrying in 1 s\n"), dupOut())
        XCTAssertFalse(dupOut().contains("dup-0: connected"), dupOut())
        let vms = try await daemon.list()
        XCTAssertEqual(vms.map(\.name), ["web-0"])
    }
}
