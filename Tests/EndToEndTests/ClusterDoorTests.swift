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

        // The escape menu's BREAK (Ctrl-] b) on n2 reaches the VM on n1 as a telnet BREAK, and nothing else.
        let before = vm.raw.count
        session.type([0x1D, UInt8(ascii: "b")])
        try await vm.wait("a telnet BREAK at the VM", timeout: 30) { Array(vm.raw.dropFirst(before)) == [255, 243] }
        try await session.waitFor("BREAK sent (through node n1)")
    }
}

/// The browser console on the daemon that does not own the console: the one-time URL minted there opens a page
/// fed over the internal link from the owner, and keys typed in headless Chromium reach the VM on the owner.
final class ClusterWebDoorTests: ClusterTestCase {
    var browsers: [Browser] = []

    override func tearDown() async throws {
        browsers.forEach { $0.stop() }
        browsers = []
        try await super.tearDown()
    }

    func testABrowserOnTheOtherDaemonIsForwardedToTheOwner() async throws {
        if let missing = Browser.missingPackages() {
            let message = "ClusterWebDoorTests: install Debian's \(missing) (the browser tests need chromium chromium-driver python3-selenium node-xterm esbuild)"
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail(message) }
            throw XCTSkip(message)
        }
        let nodes = try makeNodes(2, ["--scrollback", "65536"])
        let assets = nodes[0].directory.appendingPathComponent("web")
        try bundleWebAssets(into: assets)
        var httpPorts: [Int] = []
        for node in nodes {
            let port = try freePort()
            httpPorts.append(port)
            node.extraArguments += ["--http", "\(node.host):\(port)", "--web-assets", assets.path]
            try await node.start(timeout: 60)
        }
        let (n1, n2) = (nodes[0], nodes[1])
        let uuid = testUUID(4)
        let vm = try await connectVM(n1, uuid, "browser-1")
        _ = try await port(n2, uuid)
        try await waitUntil("n2 to list n1 as the owner", timeout: 60) { try self.listedOwner(n2, uuid) == "n1" }
        // n2's list says where the VM is: not "down", but elsewhere, and OWNER names the node.
        let table = try vspc(n2, ["list", "--table"])
        let row = table.split(separator: "\n").first { $0.hasPrefix("browser-1 ") }.map(String.init) ?? table
        XCTAssertEqual(row.split(separator: " ", omittingEmptySubsequences: true).filter { ["elsewhere", "n1"].contains($0) }.count, 2, row)
        XCTAssertTrue(try vspc(n1, ["list", "--table"]).contains(" up "))

        let minted = try Daemon.runTool("vspc", ["url", "browser-1", "--admin", "\(n2.host):\(n2.adminPort)"])
        XCTAssertEqual(minted.status, 0, minted.err)
        let url = minted.text.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(url.hasPrefix("http://\(n2.host):\(httpPorts[1])/console/"), url)
        let page = try Browser()
        browsers.append(page)
        try await page.open(url)

        // What n1's VM prints reaches the page on n2 once the feed is open: lines until one shows.
        var shown = false
        for n in 0..<300 where !shown {
            vm.output("sync \(n)\r\n")
            shown = (try? await page.wait(for: "sync \(n)", seconds: 0.2)) != nil
        }
        XCTAssertTrue(shown, "the page on n2 shows what the VM on n1 prints")
        try await page.run(["type", "whoami\n"])
        try await vm.wait("the keys typed on n2's page", timeout: 30) { vm.data == Array("whoami\r".utf8) }
        vm.output("root\r\nbrowser-1 login: ")
        _ = try await page.wait(for: "browser-1 login:")
        if let path = ProcessInfo.processInfo.environment["VSPC_WEB_SCREENSHOT"] {
            try await page.run(["screenshot", path])
        }
        // The attach is n2's to record: the person is there.
        try await n2.waitForLog("client-attach browser-1")
        XCTAssertTrue(n2.log.contains("door=web mode=read-write"), "n2 records the browser's attach")
    }
}
