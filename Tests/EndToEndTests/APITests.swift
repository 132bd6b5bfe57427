import Foundation
import VSPCSim
import XCTest

/// The JSON API on the real daemon: tokens (none, wrong, revoked, limited by --vms, read-only), the resources,
/// the audit, and the OpenAPI document it serves.
final class APITests: APITestCase {
    func testTheAPINeedsAValidTokenAndShowsWhatItAllows() async throws {
        try requireCurl()
        let httpPort = try freePort()
        let daemon = try await startDaemon(["--http", "127.0.0.1:\(httpPort)"])
        let base = "http://127.0.0.1:\(httpPort)/api/v1"
        let web = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(1), name: "web01")
        defer { web.close() }
        let db = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(2), name: "db01")
        defer { db.close() }
        _ = try await daemon.port(of: web.uuid)
        _ = try await daemon.port(of: db.uuid)

        // No token, a wrong one, another scheme: 401, with the scheme to use.
        let none = try request(base, "/consoles")
        XCTAssertEqual(none.status, 401)
        XCTAssertTrue(none.headers.contains("WWW-Authenticate: Bearer realm=\"vspcd\""), "\(none.headers)")
        XCTAssertEqual((none.json() as? [String: Any])?["error"] as? String,
                       "give a valid API token: Authorization: Bearer <token> (vspc token create)")
        XCTAssertEqual(try request(base, "/consoles", token: "vspc_" + String(repeating: "A", count: 43)).status, 401)
        XCTAssertEqual(try request(base, "/consoles", ["-H", "Authorization: Basic YWxpY2U6c2VjcmV0"]).status, 401)
        // Logged once a minute per address, not per request.
        try await daemon.waitForLog("refused a JSON API call from 127.0.0.1:")
        XCTAssertEqual(daemon.log.components(separatedBy: "refused a JSON API call").count - 1, 1, daemon.log)

        let all = try createToken(daemon, ["--comment", "the test"])
        let listed = try request(base, "/consoles", token: all.token)
        XCTAssertEqual(listed.status, 200, listed.text)
        XCTAssertEqual(names(listed), ["db01", "web01"])
        let one = try request(base, "/consoles/web01", token: all.token)
        XCTAssertEqual((one.json() as? [String: Any])?["uuid"] as? String, web.uuid)
        XCTAssertEqual((one.json() as? [String: Any])?["connected"] as? Bool, true)
        XCTAssertEqual(try request(base, "/consoles/nosuchvm", token: all.token).status, 404)
        XCTAssertEqual(try request(base, "/consoles/web01?label=a%20b", token: all.token).status, 400)
        let history = try request(base, "/consoles/web01/history?limit=5", token: all.token)
        XCTAssertEqual(history.status, 200, history.text)
        let events = ((history.json() as? [String: Any])?["events"] as? [[String: Any]]) ?? []
        XCTAssertTrue(events.contains { $0["kind"] as? String == "vm-connect" }, history.text)
        XCTAssertEqual(try request(base, "/consoles/web01/history?since=yesterday", token: all.token).status, 400)

        // A token limited by --vms sees only its consoles: the others are not found.
        let limited = try createToken(daemon, ["--vms", "web*"])
        XCTAssertEqual(names(try request(base, "/consoles", token: limited.token)), ["web01"])
        XCTAssertEqual(try request(base, "/consoles/db01", token: limited.token).status, 404)
        XCTAssertEqual(try request(base, "/consoles/db01/history", token: limited.token).status, 404)
        XCTAssertEqual(try request(base, "/consoles/web01", token: limited.token).status, 200)

        // Revoked: refused at once.
        let revoked = try vspc(["token", "revoke", limited.id, "--admin", daemon.adminArgument])
        XCTAssertEqual(revoked.status, 0, revoked.err)
        XCTAssertEqual(try request(base, "/consoles", token: limited.token).status, 401)
        XCTAssertEqual(try request(base, "/consoles", token: all.token).status, 200)
        let tokens = try vspc(["token", "list", "--json", "--admin", daemon.adminArgument])
        let states = ((try? JSONSerialization.jsonObject(with: tokens.out)) as? [[String: Any]] ?? [])
            .map { "\($0["id"] ?? "")=\($0["state"] ?? "")" }
        XCTAssertEqual(states, ["\(all.id)=active", "\(limited.id)=revoked"])
        XCTAssertFalse(tokens.text.contains(all.token), "a token is never shown again")
        XCTAssertFalse(daemon.log.contains(all.token), "a token is never logged")

        // The audit: who, what, from where.
        let audit = try await waitForEvents(daemon, "web01", kind: "api-call")
        XCTAssertEqual(audit.first?["door"] as? String, "api")
        XCTAssertEqual(audit.first?["keyComment"] as? String, "the test")
        XCTAssertEqual(audit.first?["detail"] as? String, "token \(all.id): GET /api/v1/consoles/web01 200")
        XCTAssertTrue((audit.first?["peer"] as? String ?? "").hasPrefix("127.0.0.1:"), "\(audit)")

        // The document it serves is docs/openapi.json, without a token.
        let document = try request(base, "/openapi.json")
        XCTAssertEqual(document.status, 200)
        let file = try String(contentsOf: InstallTests.repository.appendingPathComponent("docs/openapi.json"), encoding: .utf8)
        XCTAssertEqual(document.text, file.trimmingCharacters(in: .newlines))
    }

    func testATokenMintsConsoleURLsAReadOnlyOneNoneThatWrites() async throws {
        try requireCurl()
        let httpPort = try freePort()
        let daemon = try await startDaemon(["--http", "127.0.0.1:\(httpPort)"])
        let base = "http://127.0.0.1:\(httpPort)/api/v1"
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(3), name: "app01")
        defer { vm.close() }
        _ = try await daemon.port(of: vm.uuid)
        let reader = try createToken(daemon, ["--read-only", "--ttl", "1h"])
        let writes = try request(base, "/consoles/app01/urls", token: reader.token, method: "POST", body: #"{"mode":"read-write"}"#)
        XCTAssertEqual(writes.status, 403, writes.text)
        XCTAssertEqual((writes.json() as? [String: Any])?["error"] as? String, "this token is read-only: ask for mode read-only")
        XCTAssertEqual(try request(base, "/consoles/app01/urls", token: reader.token, method: "POST", body: "{").status, 400)
        // A read-only URL it may mint, as `vspc url` does; its mode is the token's unless asked.
        let minted = try request(base, "/consoles/app01/urls", token: reader.token, method: "POST", body: #"{"ttl":60}"#)
        XCTAssertEqual(minted.status, 201, minted.text)
        let url = (minted.json() as? [String: Any])?["url"] as? String ?? ""
        XCTAssertTrue(url.hasPrefix("http://127.0.0.1:\(httpPort)/console/"), url)
        XCTAssertFalse(daemon.log.contains(String(url.dropFirst("http://127.0.0.1:\(httpPort)/console/".count))),
                       "a console URL's token is never logged")
        let writer = try createToken(daemon)
        let writes2 = try request(base, "/consoles/app01/urls", token: writer.token, method: "POST", body: #"{"mode":"read-write"}"#)
        XCTAssertEqual(writes2.status, 201, writes2.text)
        // The console's history says who minted each URL: the token.
        let mints = try await waitForEvents(daemon, "app01", kind: "console-url", count: 2)
        XCTAssertEqual(mints.map { ($0["detail"] as? String ?? "").hasSuffix("minted-by=api token \(reader.id)") }, [true, false])
        XCTAssertTrue((mints.last?["detail"] as? String ?? "").contains("mode=read-write"), "\(mints)")
        XCTAssertTrue((mints.last?["detail"] as? String ?? "").hasSuffix("minted-by=api token \(writer.id)"), "\(mints)")
        XCTAssertEqual(try request(base, "/consoles/app01/urls", token: writer.token, method: "POST", body: #"{"ttl":0}"#).status, 400)
        // Every call that acts is recorded, refused ones too.
        let audit = try await waitForEvents(daemon, "app01", kind: "api-call", count: 5)
        XCTAssertEqual(audit.map { $0["detail"] as? String ?? "" },
                       ["token \(reader.id): POST /api/v1/consoles/app01/urls 403",
                        "token \(reader.id): POST /api/v1/consoles/app01/urls 400",
                        "token \(reader.id): POST /api/v1/consoles/app01/urls 201",
                        "token \(writer.id): POST /api/v1/consoles/app01/urls 201",
                        "token \(writer.id): POST /api/v1/consoles/app01/urls 400"])
    }

    func testTheConsoleLogInATimeWindow() async throws {
        try requireCurl()
        let httpPort = try freePort()
        let daemon = try await startDaemon(["--http", "127.0.0.1:\(httpPort)"])
        let base = "http://127.0.0.1:\(httpPort)/api/v1"
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(4), name: "logged")
        defer { vm.close() }
        _ = try await daemon.port(of: vm.uuid)
        let token = try createToken(daemon).token
        vm.output("booting\r\nlogin: ")
        var answer = try request(base, "/consoles/logged/log", token: token)
        try await waitUntil("the log to hold the output") {
            answer = try request(base, "/consoles/logged/log", token: token)
            return answer.text == "booting\r\nlogin: "
        }
        XCTAssertEqual(answer.status, 200)
        let future = try request(base, "/consoles/logged/log?since=2999-01-01T00:00:00Z", token: token)
        XCTAssertEqual(future.status, 200)
        XCTAssertEqual(future.body, Data())
        XCTAssertEqual(try request(base, "/consoles/logged/log?until=never", token: token).status, 400)
    }
}
