import Foundation
import VSPCCore
import VSPCSim
import XCTest

/// People on any daemon: `ssh VM@n2` to a console that n1 owns is forwarded over the internal link, output and
/// input, as the real OpenSSH client sees it.
final class ClusterDoorTests: ClusterTestCase {
    var sessions: [SSHSession] = []
    var work: URL!

    override func setUp() async throws {
        try await super.setUp()
        work = FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-cluster-ssh-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        if let run = testRun, run.failureCount + run.unexpectedExceptionCount > 0 {
            for session in sessions {
                print("--- \(session.name): stdout \(session.text.debugDescription) stderr \(session.err.debugDescription)")
            }
        }
        sessions.forEach { $0.stop() }
        sessions = []
        if let work { try? FileManager.default.removeItem(at: work) }
        try await super.tearDown()
    }

    func testSSHOnTheOtherDaemonIsForwardedToTheOwner() async throws {
        let alice = try SSHKey.generate("ed25519", comment: "alice@laptop", in: work)
        let authorizedKeys = work.appendingPathComponent("authorized_keys").path
        try Data((try alice.publicLine + "\n").utf8).write(to: URL(fileURLWithPath: authorizedKeys))
        chmod(authorizedKeys, 0o600)
        let nodes = try makeNodes(2)
        var sshPorts: [Int] = []
        for node in nodes {
            let port = try freePort()
            sshPorts.append(port)
            node.extraArguments += ["--ssh", "\(node.host):\(port)", "--ssh-authorized-keys", authorizedKeys,
                                    "--ssh-host-key", node.directory.appendingPathComponent("ssh_host_ed25519_key").path]
            try await node.start(timeout: 60)
            try await node.waitForLog("ssh listening on \(node.host):\(port)")
        }
        let (n1, n2) = (nodes[0], nodes[1])
        let uuid = testUUID(3)
        let vm = try await connectVM(n1, uuid, "forwarded-1")
        _ = try await port(n2, uuid)
        try await waitUntil("n2 to list n1 as the owner", timeout: 60) { try self.listedOwner(n2, uuid) == "n1" }

        // -T: no pty; the bytes are the daemons'.
        let knownHosts = work.appendingPathComponent("known_hosts").path
        let session = try SSHSession("ssh forwarded-1@n2", sshOptions(port: sshPorts[1], key: alice, knownHosts: knownHosts)
                                         + ["-T", "forwarded-1@\(n2.host)"])
        sessions.append(session)
        try await session.waitFor("[vspcd: connected to forwarded-1")

        // Output printed on n1 reaches the session on n2 (once the feed is open: sync lines until one arrives).
        let marker = Array("sync ".utf8)
        var n = 0
        let deadline = Date().addingTimeInterval(60)
        while !containsBytes(session.out, marker) {
            if Date() > deadline { throw SimError("the ssh session on n2 never saw n1's output") }
            n += 1
            vm.output("sync \(n)\r\n")
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let output = patternBytes(6000, seed: 51)
        vm.output(output)
        try await session.waitForOutput("the VM's bytes through n2") { containsBytes($0, output) }

        // Input typed on n2 reaches the VM on n1 (everything but Ctrl-], the menu's escape).
        let typed = patternBytes(2000, seed: 52).filter { $0 != 0x1D }
        session.type(typed)
        try await vm.wait("the typed bytes at the VM", timeout: 30) { vm.data.count >= typed.count }
        XCTAssertEqual(vm.data, typed, "typed on n2, at the VM on n1, byte for byte")
        XCTAssertTrue(session.isRunning)
    }
}
