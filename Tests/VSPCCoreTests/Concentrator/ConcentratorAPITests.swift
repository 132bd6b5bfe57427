import Foundation
import XCTest
@testable import VSPCCore

/// The JSON API's side of the core: tokens created, listed and revoked over the admin endpoint (hash only), what
/// a token sees, and the audit of its calls (acts always; reads one a minute per token and console, the rest
/// counted).
final class ConcentratorAPITests: XCTestCase {
    let hashA = String(repeating: "a1", count: 32)
    let hashB = String(repeating: "b2", count: 32)

    private func create(_ h: ConcentratorHarness, hash: String, vms: [String] = [], readOnly: Bool = false,
                        ttl: Double? = nil, comment: String? = nil) -> AdminResponse? {
        var request = AdminRequest(command: "token-create")
        request.tokenHash = hash
        request.vms = vms
        request.tokenReadOnly = readOnly
        request.tokenTTL = ttl
        request.comment = comment
        return h.admin(request).response
    }

    func testCreateListRevokeKeepOnlyTheHashAndAreRecorded() {
        let h = ConcentratorHarness()
        let created = create(h, hash: hashA, vms: ["web*"], readOnly: true, ttl: 60, comment: "monitoring")
        XCTAssertEqual(created?.ok, true)
        XCTAssertEqual(created?.token?.id, "a1a1a1a1a1a1")
        XCTAssertEqual(created?.token?.state, "active")
        XCTAssertEqual(h.records.map(\.kind), [.apiTokenCreated])
        XCTAssertEqual(h.records.first?.detail, "token a1a1a1a1a1a1; vms=web* read-only expires \(AdminProtocol.timestamp(h.clock.date.addingTimeInterval(60))); monitoring")
        guard case .saveToken(let saved)? = h.actions.persistedOps.last else { return XCTFail("the token is not saved") }
        XCTAssertEqual(saved.hash, hashA)
        XCTAssertEqual(h.machine.apiToken(hash: hashA, at: h.clock.date)?.id, "a1a1a1a1a1a1")

        // The same hash again is refused; the list shows the token without its hash.
        XCTAssertEqual(create(h, hash: hashA)?.ok, false)
        let listed = h.admin(AdminRequest(command: "token-list")).response?.tokens
        XCTAssertEqual(listed?.map(\.id), ["a1a1a1a1a1a1"])
        XCTAssertEqual(listed?.first?.vms, ["web*"])

        // It expires with its ttl.
        XCTAssertNil(h.machine.apiToken(hash: hashA, at: h.clock.date.addingTimeInterval(61)))

        var revoke = AdminRequest(command: "token-revoke")
        revoke.token = "a1a1a1a1a1a1"
        XCTAssertEqual(h.admin(revoke).response?.token?.state, "revoked")
        XCTAssertNil(h.machine.apiToken(hash: hashA, at: h.clock.date))
        XCTAssertEqual(h.records.last?.kind, .apiTokenRevoked)
        revoke.token = "nosuchtoken"
        XCTAssertEqual(h.admin(revoke).response?.error, "no API token with id \"nosuchtoken\"")
    }

    func testTokenRequestsAreChecked() {
        let h = ConcentratorHarness()
        XCTAssertEqual(create(h, hash: "abc")?.error, "token-create needs tokenHash, a SHA-256 as 64 lowercase hex digits")
        XCTAssertEqual(create(h, hash: hashA.uppercased())?.ok, false)
        XCTAssertEqual(create(h, hash: hashA, ttl: 0)?.ok, false)
        XCTAssertEqual(create(h, hash: hashA, vms: [""])?.ok, false)
        XCTAssertEqual(create(h, hash: hashA, comment: "line\nbreak")?.ok, false)
        XCTAssertEqual(h.admin(AdminRequest(command: "token-revoke")).response?.error, "token-revoke needs token, a token id")
        XCTAssertEqual(h.machine.apiTokens.all, [])
    }

    func testATokenSeesOnlyTheConsolesOfItsGlobs() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.a, name: "web01")
        h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        XCTAssertEqual(create(h, hash: hashA, vms: ["web*"])?.ok, true)
        XCTAssertEqual(create(h, hash: hashB)?.ok, true)
        guard let limited = h.machine.apiToken(hash: hashA, at: h.clock.date),
            let all = h.machine.apiToken(hash: hashB, at: h.clock.date)
        else { return XCTFail("no tokens") }
        XCTAssertEqual(h.machine.consoleInfos(for: limited).map(\.name), ["web01"])
        XCTAssertEqual(h.machine.consoleInfos(for: all).map(\.name), ["db01", "web01"])
        XCTAssertEqual(try? h.machine.apiConsole("web01", label: nil, for: limited).get().uuid, UUIDs.a)
        XCTAssertEqual(h.machine.apiConsole("db01", label: nil, for: limited),
                       .failure(AdminError("no console matches \"db01\"")))
        XCTAssertEqual(try? h.machine.apiConsole("db01", label: nil, for: all).get().uuid, UUIDs.b)
    }

    func testCallsThatActAreAllRecordedReadsOneAMinutePerTokenAndConsole() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.a, name: "web01")
        XCTAssertEqual(create(h, hash: hashA, comment: "ops")?.ok, true)
        let key = ConsoleKey(uuid: UUIDs.a, label: "")
        func call(_ method: String, _ path: String, acts: Bool = false, console: ConsoleKey? = key) -> [ConsoleEvent] {
            h.send(.apiCalled(APICall(tokenID: "a1a1a1a1a1a1", method: method, path: path, status: 200,
                                      peer: "127.0.0.1:5000", subject: "alice", console: console, acts: acts))).records
        }
        let first = call("GET", "/api/v1/consoles/web01")
        XCTAssertEqual(first.map(\.detail), ["token a1a1a1a1a1a1: GET /api/v1/consoles/web01 200"])
        XCTAssertEqual(first.first?.door, "api")
        XCTAssertEqual(first.first?.user, "alice")
        XCTAssertEqual(first.first?.keyComment, "ops")
        XCTAssertEqual(first.first?.name, "web01")
        XCTAssertEqual(call("GET", "/api/v1/consoles/web01/history").count, 0)
        XCTAssertEqual(call("GET", "/api/v1/consoles/web01/log").count, 0)
        XCTAssertEqual(call("GET", "/api/v1/consoles", console: nil).count, 1, "the list is a read of its own")
        XCTAssertEqual(call("GET", "/api/v1/consoles", console: nil).count, 0)
        XCTAssertEqual(call("POST", "/api/v1/consoles/web01/urls", acts: true).count, 1)
        h.advance(by: 61)
        XCTAssertEqual(call("GET", "/api/v1/consoles/web01").map(\.detail),
                       ["token a1a1a1a1a1a1: GET /api/v1/consoles/web01 200 (and 2 more such reads in the minute before)"])
    }
}
