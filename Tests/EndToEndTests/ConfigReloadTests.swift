import Foundation
import VSPCClient
import VSPCSim
import XCTest

/// `--config`: the file, its errors, flags over it, and SIGHUP.
final class ConfigReloadTests: DaemonTestCase {
    var daemon: Daemon!
    var configPath: String { daemon.directory.appendingPathComponent("vspcd.toml").path }

    override func setUp() async throws {
        try await super.setUp()
        daemon = try makeDaemon()
    }

    func writeConfig(_ text: String) throws {
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Waits until the daemon's log has `count` lines containing `text`, and returns those lines.
    @discardableResult
    func waitForLog(_ text: String, count: Int = 1, timeout: Double = 30) async throws -> [String] {
        try await daemon.waitForLog(text, count: count, timeout: timeout)
    }

    func testABadKeyOrValueIsAStartupErrorNamingTheFileAndLine() throws {
        let cases: [(String, String)] = [
            ("# vspcd\nscrollback = 1000\n\nprox = \":6779\"\n", "vspcd.toml:4: unknown key \"prox\" (did you mean proxy?)"),
            ("port-range-start = \"20000\"\n", "vspcd.toml:1: port-range-start must be an integer, not a string"),
            ("\n\nvm-expire-time = -5\n", "vspcd.toml:3: vm-expire-time must be more than 0"),
            ("proxy = \"nowhere\"\n", "vspcd.toml:1: proxy must be [host]:port"),
            ("[telemetry]\nport = 9100\n", "vspcd.toml:1: unknown key \"telemetry\""),
            ("debug = yes\n", "vspcd.toml:1:9: "),
        ]
        let db = daemon.directory.appendingPathComponent("bad.db").path
        for (text, message) in cases {
            try writeConfig(text)
            let result = try Daemon.runTool("vspcd", ["--config", configPath, "--db", db])
            XCTAssertEqual(result.status, 2, text)
            XCTAssertTrue(result.err.hasPrefix("vspcd: \(configPath):"), "\(text): \(result.err)")
            XCTAssertTrue(result.err.contains(message), "\(text): \(result.err)")
        }
        let missing = try Daemon.runTool("vspcd", ["--config", daemon.directory.appendingPathComponent("none.toml").path, "--db", db])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.err.contains("none.toml does not exist"), missing.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: db), "no database is created by a daemon that refused to start")
    }

    func testTheFileSetsWhatTheCommandLineDoesNot() async throws {
        // The file names another admin port and a port range the harness overrides: the flags win, and
        // the daemon answers on the harness's ports. The file's log-format applies.
        try writeConfig("""
        admin = "127.0.0.1:1"
        port-range-start = 1
        port-range-end = 2
        log-format = "json"
        scrollback = 1000
        """)
        daemon.extraArguments = ["--config", configPath]
        try await daemon.start()
        try await daemon.stop()
        let lines = daemon.log.split(separator: "\n")
        XCTAssertFalse(lines.isEmpty)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            XCTAssertNotNil(object?["time"] as? String, String(line))
            XCTAssertNotNil(object?["level"] as? String, String(line))
            XCTAssertNotNil(object?["message"] as? String, String(line))
        }
        XCTAssertTrue(daemon.log.contains("range \(daemon.portRange.lowerBound)-\(daemon.portRange.upperBound)"), daemon.log)
        XCTAssertTrue(daemon.log.contains("\"sl-signal\":\"SIGTERM\""), "metadata fields are JSON fields:\n\(daemon.log)")
    }

    func testSIGHUPChangesTheLogLevelAndNamesWhatNeedsARestart() async throws {
        try writeConfig("debug = false\nservice-uri = \"vSPC.py\"\nproxy = \"127.0.0.1:1\"\n")
        daemon.logLevelArguments = [] // notices only, as the file says
        daemon.extraArguments = ["--config", configPath]
        try await daemon.start()
        let pid = daemon.process!.processIdentifier

        // At notice level, a VM connecting logs its port assignment but not the debug "VM connection from".
        let first = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(1), name: "before")
        defer { first.close() }
        _ = try await daemon.port(of: first.uuid)
        try await waitForLog("port-assigned before (")

        try writeConfig("debug = true\nservice-uri = \"other\"\nproxy = \"127.0.0.1:2\"\n")
        kill(pid, SIGHUP)
        // proxy is overridden by the command line, so it changed nothing; service-uri needs a restart.
        try await waitForLog("reloaded: debug false -> true; needs a restart: service-uri")

        let second = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(2), name: "after")
        defer { second.close() }
        _ = try await daemon.port(of: second.uuid)
        try await waitForLog("port-assigned after (")
        let debugLines = try await waitForLog("VM connection from")
        XCTAssertEqual(debugLines.count, 1, "only the VM that came after the reload is logged at debug level:\n\(daemon.log)")
        XCTAssertTrue(debugLines[0].hasPrefix("<7>vspcd["), debugLines[0])
        XCTAssertEqual(daemon.log.components(separatedBy: "vm-connect ").count - 1, 1, daemon.log)

        // A file that no longer checks changes nothing and says why.
        try writeConfig("debug = false\nbogus = 1\n")
        kill(pid, SIGHUP)
        try await waitForLog("reload failed, settings unchanged: \(configPath):2: unknown key \"bogus\"")
        // Back to notices; the unchanged service-uri is still named, as it still needs a restart.
        try writeConfig("debug = false\nservice-uri = \"other\"\n")
        kill(pid, SIGHUP)
        try await waitForLog("reloaded: debug true -> false; needs a restart: service-uri")
        _ = try await daemon.list()
        try await daemon.stop()
    }

    func testSIGHUPWithoutAConfigFileIsHarmless() async throws {
        try await daemon.start()
        kill(daemon.process!.processIdentifier, SIGHUP)
        try await waitForLog("SIGHUP: vspcd runs without --config; nothing to reload")
        _ = try await daemon.list()
        try await daemon.stop()
    }
}
