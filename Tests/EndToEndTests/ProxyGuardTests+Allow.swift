import Foundation
import VSPCSim
import VSPCStore
import XCTest

/// `--proxy-allow` at start-up and on reload (config file and SIGHUP), with VMs from 127.0.0.1 and 127.0.0.2.
extension ProxyGuardTests {
    func configPath(_ daemon: Daemon) -> String { daemon.directory.appendingPathComponent("vspcd.toml").path }

    func writeConfig(_ daemon: Daemon, _ text: String) throws {
        try text.write(toFile: configPath(daemon), atomically: true, encoding: .utf8)
    }

    /// A daemon started with `--config` and this file.
    func startWithConfig(_ text: String) async throws -> Daemon {
        let daemon = try makeDaemon()
        try writeConfig(daemon, text)
        daemon.extraArguments += ["--config", configPath(daemon)]
        try await daemon.start()
        return daemon
    }

    // MARK: - 14.6 tightening on reload

    func testTighteningProxyAllowOnReloadClosesTheVMsItExcludes() async throws {
        let daemon = try await startWithConfig("proxy-allow = \"127.0.0.0/8\"\n")
        let outside = try await vm(daemon, testUUID(61), "outside-61", from: "127.0.0.2")
        let inside = try await vm(daemon, testUUID(62), "inside-62")
        _ = try await daemon.port(of: outside.uuid)
        _ = try await daemon.port(of: inside.uuid)

        try writeConfig(daemon, "proxy-allow = \"127.0.0.1/32\"\n")
        kill(try XCTUnwrap(daemon.process).processIdentifier, SIGHUP)
        try await daemon.waitForLog("reloaded: proxy-allow \"127.0.0.0/8\" -> \"127.0.0.1/32\"")
        try await outside.waitForClose(timeout: 30)
        let events = try await waitForEvents(daemon, uuid: outside.uuid, "vm-disconnect") {
            $0.contains { $0.kind == "vm-disconnect" }
        }
        let disconnect = try XCTUnwrap(events.last { $0.kind == "vm-disconnect" })
        XCTAssertTrue(disconnect.detail?.contains("no longer in --proxy-allow") == true, describe(events))

        // The VM from 127.0.0.1 stays, and its console still works.
        try await inside.barrier()
        XCTAssertFalse(inside.closed)
        let listed = try await daemon.list()
        XCTAssertEqual(listed.first { $0.uuid == inside.uuid }?.connected, true, "\(listed)")
        XCTAssertEqual(listed.first { $0.uuid == outside.uuid }?.connected, false, "\(listed)")
        let insideEvents = try Store(path: daemon.dbPath, readOnly: true).events(uuid: inside.uuid)
        XCTAssertFalse(insideEvents.contains { $0.kind == "vm-disconnect" }, describe(insideEvents))
    }

    // MARK: - 14.7 an empty list is an error; `any` is explicit

    func testAnEmptyProxyAllowStopsStartupAndAnyStarts() async throws {
        for value in ["", ","] {
            let daemon = try makeDaemon(["--proxy-allow", value])
            do {
                try await daemon.start(timeout: 30)
                XCTFail("vspcd started with --proxy-allow \(value.debugDescription)")
            } catch {
                let process = try XCTUnwrap(daemon.process)
                XCTAssertFalse(process.isRunning)
                XCTAssertNotEqual(process.terminationStatus, 0)
                XCTAssertTrue(daemon.log.contains("--proxy-allow"), "\(value.debugDescription): \(daemon.log)")
            }
        }
        let open = try await startDaemon(["--proxy-allow", "any"])
        let far = try await vm(open, testUUID(71), "far-71", from: "127.0.0.2")
        _ = try await open.port(of: far.uuid)
        let near = try await vm(open, testUUID(72), "near-72")
        _ = try await open.port(of: near.uuid)
    }

    // MARK: - 14.8 removing proxy-allow from the file

    func testAReloadThatRemovesProxyAllowLetsEveryoneIn() async throws {
        let daemon = try await startWithConfig("proxy-allow = \"127.0.0.1/32\"\n")
        let refused = try await vm(daemon, testUUID(81), "early-81", from: "127.0.0.2", waitForProxy: false)
        try await refused.waitForClose(timeout: 30)
        XCTAssertEqual(refused.raw, [], "a VM from outside the list was sent bytes")
        try await daemon.waitForLog("refused proxy connection from 127.0.0.2:")

        try writeConfig(daemon, "# proxy-allow removed\n")
        let pid = try XCTUnwrap(daemon.process).processIdentifier
        kill(pid, SIGHUP)
        try await daemon.waitForLog("proxy-allow \"127.0.0.1/32\" -> (unset)")
        let later = try await vm(daemon, testUUID(82), "later-82", from: "127.0.0.2")
        _ = try await daemon.port(of: later.uuid)

        kill(pid, SIGHUP)
        try await daemon.waitForLog("reloaded: no change")
        try await later.barrier()
        XCTAssertFalse(later.closed)
    }
}
