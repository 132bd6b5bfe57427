import Foundation
import XCTest

/// What the JSON API's end-to-end tests share: curl (HTTPS with a test CA, client certificates) and tokens made
/// with the real `vspc token create`.
class APITestCase: DaemonTestCase {
    struct HTTPAnswer {
        /// 0 when no HTTP answer came (curl's exit status is in `curlStatus`).
        var status: Int
        var body: Data
        /// The response's header lines.
        var headers: [String]
        var curlStatus: Int32
        var text: String { String(decoding: body, as: UTF8.self) }
        func json() -> Any? { try? JSONSerialization.jsonObject(with: body) }
    }

    /// curl must be there; a missing one skips the test with one line naming the package, except under CI.
    func requireCurl() throws {
        guard !FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else { return }
        if ProcessInfo.processInfo.environment["CI"] != nil {
            XCTFail("/usr/bin/curl is missing under CI: install Debian's curl")
        }
        throw XCTSkip("install Debian's curl")
    }

    /// One request with curl: `path` under the base URL, `token` as a bearer token, extra curl arguments.
    func request(_ base: String, _ path: String, token: String? = nil, method: String = "GET", body: String? = nil,
                 _ extra: [String] = []) throws -> HTTPAnswer {
        let folder = FileManager.default.temporaryDirectory
        let out = folder.appendingPathComponent("vspcd-api-\(UUID().uuidString)")
        let head = folder.appendingPathComponent("vspcd-api-\(UUID().uuidString).head")
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: head)
        }
        var arguments = ["-sS", "--max-time", "20", "-o", out.path, "-D", head.path, "-w", "%{http_code}", "-X", method]
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        if let body { arguments += ["-H", "Content-Type: application/json", "--data-binary", body] }
        arguments += extra + [base + path]
        let result = try runCommand("/usr/bin/curl", arguments)
        let body = (try? Data(contentsOf: out)) ?? Data()
        let headers = ((try? String(contentsOf: head, encoding: .utf8)) ?? "").split(separator: "\r\n").map(String.init)
        return HTTPAnswer(status: Int(result.text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, body: body,
                          headers: headers, curlStatus: result.status)
    }

    /// `vspc token create ARGS` against `daemon`: the token (printed once) and its id.
    func createToken(_ daemon: Daemon, _ arguments: [String] = []) throws -> (token: String, id: String) {
        let result = try vspc(["token", "create", "--admin", daemon.adminArgument] + arguments)
        XCTAssertEqual(result.status, 0, result.err)
        let token = result.text.trimmingCharacters(in: .newlines)
        XCTAssertTrue(token.hasPrefix("vspc_") && token.count == 48, token)
        let id = result.err.split(separator: " ").dropFirst().first.map(String.init) ?? ""
        XCTAssertEqual(id.count, 12, result.err)
        return (token, id)
    }

    /// Runs a program (not one of the package's), killed after 120 seconds.
    func runCommand(_ path: String, _ arguments: [String], environment: [String: String]? = nil,
                    cwd: URL? = nil) throws -> ToolResult {
        try Daemon.runProcess(path, arguments, environment: environment, cwd: cwd, timeout: 300)
    }

    /// The names in a JSON array of consoles.
    func names(_ answer: HTTPAnswer) -> [String] {
        ((answer.json() as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String }
    }

    /// The events of `vm`'s history (asked of the daemon) of one kind, waiting until `count` of them are there.
    func waitForEvents(_ daemon: Daemon, _ vm: String, kind: String, count: Int = 1) async throws -> [[String: Any]] {
        var found: [[String: Any]] = []
        try await waitUntil("\(count) \(kind) events of \(vm)", timeout: 30) {
            let result = try? vspc(["history", vm, "--json", "--admin", daemon.adminArgument])
            let events = (result.flatMap { try? JSONSerialization.jsonObject(with: $0.out) } as? [[String: Any]]) ?? []
            found = events.filter { $0["kind"] as? String == kind }
            return found.count >= count
        }
        return found
    }
}
