import Foundation
import VSPCSim
import XCTest

/// HTTPS on the HTTP listener (`--http-cert`, `--http-key`), client certificates (`--http-client-ca`), and the
/// server checked against its OpenAPI document by schemathesis.
final class APITLSTests: APITestCase {
    func testHTTPSWithTheTestCA() async throws {
        try requireCurl()
        let httpPort = try freePort()
        let daemon = try await startDaemon(["--http", "127.0.0.1:\(httpPort)", "--http-cert", fixture("http-server-cert.pem"),
                                            "--http-key", fixture("http-server-key.pem")])
        let token = try createToken(daemon).token
        let answer = try request("https://127.0.0.1:\(httpPort)/api/v1", "/consoles", token: token,
                                 ["--cacert", fixture("http-ca.pem")])
        XCTAssertEqual(answer.status, 200, answer.text)
        XCTAssertEqual(answer.text, "[]\n")
        // A client that does not trust the CA refuses the server; plain HTTP gets no HTTP answer.
        XCTAssertNotEqual(try request("https://127.0.0.1:\(httpPort)/api/v1", "/consoles", token: token).curlStatus, 0)
        XCTAssertEqual(try request("http://127.0.0.1:\(httpPort)/api/v1", "/consoles", token: token).status, 0)
        try await daemon.waitForLog("HTTP on https://127.0.0.1:\(httpPort)")
        XCTAssertFalse(daemon.log.contains("without TLS"), daemon.log)
    }

    func testClientCertificatesAreRequiredAndNameThePersonInTheAudit() async throws {
        try requireCurl()
        let httpPort = try freePort()
        let daemon = try await startDaemon([
            "--http", "127.0.0.1:\(httpPort)", "--http-cert", fixture("http-server-cert.pem"),
            "--http-key", fixture("http-server-key.pem"), "--http-client-ca", fixture("http-ca.pem"),
        ])
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(5), name: "secure01")
        defer { vm.close() }
        _ = try await daemon.port(of: vm.uuid)
        let token = try createToken(daemon).token
        let base = "https://127.0.0.1:\(httpPort)/api/v1"
        let without = try request(base, "/consoles", token: token, ["--cacert", fixture("http-ca.pem")])
        XCTAssertEqual(without.status, 0, "no HTTP answer without a client certificate")
        XCTAssertNotEqual(without.curlStatus, 0)
        let with = try request(base, "/consoles/secure01", token: token, [
            "--cacert", fixture("http-ca.pem"), "--cert", fixture("http-client-cert.pem"), "--key", fixture("http-client-key.pem"),
        ])
        XCTAssertEqual(with.status, 200, with.text)
        let audit = try await waitForEvents(daemon, "secure01", kind: "api-call")
        XCTAssertEqual(audit.first?["user"] as? String, "CN=alice@example.org")
    }

    func testListeningBeyondLoopbackWithoutTLSIsWarnedAbout() async throws {
        let httpPort = try freePort()
        let daemon = try await startDaemon(["--http", "0.0.0.0:\(httpPort)", "--http-allow", "127.0.0.0/8"])
        try await daemon.waitForLog("is reachable beyond this host without TLS")
    }

    func testHalfATLSSettingIsAClearStartupError() async throws {
        let daemon = try makeDaemon(["--http", "127.0.0.1:\(try freePort())", "--http-cert", fixture("http-server-cert.pem")])
        do {
            try await daemon.start(timeout: 10)
            XCTFail("vspcd started with a certificate and no key")
        } catch {
            XCTAssertTrue(daemon.log.contains("--http-cert needs --http-key too"), daemon.log)
        }
    }

    /// schemathesis (from PyPI, installed by .ci/run) sends what docs/openapi.json allows, and things it does not,
    /// and checks every answer against the document.
    func testTheServerAgainstItsOpenAPIDocument() async throws {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            .map { "\($0)/schemathesis" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let schemathesis = path else {
            if ProcessInfo.processInfo.environment["CI"] != nil {
                XCTFail("schemathesis is missing under CI: pip install schemathesis (.ci/run does)")
            }
            throw XCTSkip("install schemathesis from PyPI (pip install schemathesis)")
        }
        let httpPort = try freePort()
        let daemon = try await startDaemon(["--http", "127.0.0.1:\(httpPort)"])
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(6), name: "fuzzed")
        defer { vm.close() }
        _ = try await daemon.port(of: vm.uuid)
        vm.output("some output\r\n")
        let token = try createToken(daemon, ["--read-only"]).token
        // {vm} is the console that exists, so that the calls reach past the 404.
        try Data("[parameters]\n\"path.vm\" = \"fuzzed\"\n".utf8)
            .write(to: daemon.directory.appendingPathComponent("schemathesis.toml"))
        var environment = ProcessInfo.processInfo.environment
        environment["SCHEMATHESIS_HOOKS"] = nil
        let result = try runCommand(schemathesis, [
            "run", "http://127.0.0.1:\(httpPort)/api/v1/openapi.json", "-H", "Authorization: Bearer \(token)",
            "--checks", "all", "--exclude-checks", "use_after_free,ensure_resource_availability,positive_data_acceptance",
            "--max-examples", "30", "--workers", "1", "--no-color", "--phases", "examples,coverage,fuzzing",
        ], environment: environment, cwd: daemon.directory) // its cache goes there, not into the repository
        XCTAssertEqual(result.status, 0, "schemathesis:\n\(result.text)\n\(result.err)")
        XCTAssertFalse(result.text.contains("Missing test data"), result.text)
        XCTAssertTrue(result.text.contains(" passed"), result.text)
        let listed = try await daemon.list()
        XCTAssertEqual(listed.count, 1, "the daemon still answers")
    }
}
