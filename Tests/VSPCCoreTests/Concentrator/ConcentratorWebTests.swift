import XCTest
@testable import VSPCCore

/// The browser door (issue 17): `url` mints a one-time token over the admin endpoint, the page and its
/// WebSocket claim it, and the session is a person on the `web` door, recorded like an SSH attach.
final class ConcentratorWebTests: XCTestCase {
    private var keyA: ConsoleKey { ConsoleKey(uuid: UUIDs.a, label: "") }

    /// `url` for web01 over TCP; the harness's driver makes `token1`, `token2`, ...
    private func mint(_ h: ConcentratorHarness, readOnly: Bool = false, uid: UInt32? = nil) -> AdminResponse? {
        let id = h.newConnection(.admin)
        h.send(.adminConnected(id, peer: uid == nil ? "127.0.0.1:41000" : "local", uid: uid))
        h.send(.adminLine(id, Array(try! JSONEncoder().encode(AdminRequest(command: "url", vm: "web01", readOnly: readOnly, ttl: 300)))))
        let out = h.takeOutput(id)
        return try? JSONDecoder().decode(AdminResponse.self, from: Data(out.prefix { $0 != 0x0A }))
    }

    /// The page, then the WebSocket, for a browser with cookie `cookie`; the session on the web door.
    private func open(_ h: ConcentratorHarness, token: String, cookie: String = "cookie-1",
                      peer: String = "192.0.2.50:51000") throws -> ConnectionID {
        let hash = ConcentratorHarness.hash(token)
        _ = try h.answer { $0.openConsolePage(hash: hash, cookie: nil, newCookie: cookie, address: "192.0.2.50", now: $1) }.get()
        let grant = try h.answer { $0.claimConsole(hash: hash, cookie: cookie, address: "192.0.2.50", now: $1) }.get()
        let id = h.newConnection(.client)
        h.send(.sessionStarted(id, door: .web, peer: peer,
                               request: SessionRequest(target: .console(grant.console), principal: .token(grant, hash: hash))))
        return id
    }

    func testURLAnswersWithTheTokenAndRecordsNothingOfIt() throws {
        let h = ConcentratorHarness()
        h.bringUpVM()
        h.take()
        let response = try XCTUnwrap(mint(h))
        XCTAssertEqual(response.ok, true, response.error ?? "")
        XCTAssertEqual(response.url, "http://vspc.example:8080/console/token1")
        XCTAssertEqual(response.tokenID, String(ConcentratorHarness.hash("token1").prefix(12)))
        XCTAssertEqual(response.mode, .readWrite)
        XCTAssertEqual(response.expires, AdminProtocol.timestamp(h.clock.date.addingTimeInterval(300)))
        XCTAssertEqual(response.vm?.name, "web01")
        // Recorded with who minted it; the token itself is in no record and no log line.
        XCTAssertEqual(h.records.last?.kind, .consoleURL)
        XCTAssertEqual(h.records.last?.detail, "token=\(response.tokenID ?? "") mode=read-write until \(response.expires ?? "") minted-by=admin-tcp 127.0.0.1:41000")
        for action in h.take() {
            if case .log(_, let line) = action { XCTAssertFalse(line.contains("token1"), line) }
            if case .record(let event) = action { XCTAssertFalse("\(event)".contains("token1")) }
        }
    }

    func testURLNeedsTheHTTPListenerAndAKnownConsole() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        h.tokenBase = nil
        XCTAssertEqual(mint(h)?.error, "console URLs need the HTTP listener: start vspcd with --http")
        let id = h.newConnection(.admin)
        h.send(.adminConnected(id))
        h.send(.adminLine(id, Array(#"{"version":1,"command":"url","vm":"nosuch"}"#.utf8)))
        XCTAssertTrue(String(decoding: h.takeOutput(id), as: UTF8.self).contains("\"ok\":false"))
        XCTAssertEqual(AdminRequest.parse(Array(#"{"version":1,"command":"url","vm":"web01","ttl":0}"#.utf8)).failure, .invalidTTL(0))
    }

    func testASessionIsRecordedWithTokenAndMinterReplaysAndShowsNoticesApart() throws {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        h.vm(vm, says: Array("login: ".utf8))
        let minted = try XCTUnwrap(mint(h, uid: 1000))
        h.take()
        let id = try open(h, token: "token1")
        let tokenID = try XCTUnwrap(minted.tokenID)
        XCTAssertEqual(h.records, [ConsoleEvent(kind: .clientAttach, time: h.clock.date, uuid: UUIDs.a, name: "web01",
                                                peer: "192.0.2.50:51000",
                                                detail: "door=web mode=read-write token=\(tokenID) minted-by=uid 1000")])
        // The scrollback replays; notices go apart from the console's bytes.
        XCTAssertEqual(h.takeOutput(id), Array("login: ".utf8))
        XCTAssertEqual(h.notices[id], ["connected to web01 (up)"])
        // Raw both ways, with no escape menu: Ctrl-] goes to the VM too.
        XCTAssertEqual(h.vm(vm, says: [0x41, 0xFF, 0xFF]), [.broadcast([id], [0x41, 0xFF])])
        XCTAssertEqual(h.client(id, types: [0x61, 0x1D, 0xFF]), [.send(vm, [0x61, 0x1D, 0xFF, 0xFF])])
        // vMotion and disconnection notices reach the status line.
        h.send(.vmClosed(vm))
        XCTAssertEqual(h.notices[id]?.count, 2)
        h.take()
        h.send(.clientClosed(id))
        XCTAssertEqual(h.records.last?.kind, .clientDetach)
        XCTAssertEqual(h.records.last?.detail, "door=web mode=read-write token=\(tokenID) minted-by=uid 1000")
        XCTAssertEqual(h.status()["clients"], "0")
    }

    func testAReadOnlySessionSendsNothingToTheVM() throws {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        XCTAssertEqual(mint(h, readOnly: true)?.mode, .readOnly)
        let id = try open(h, token: "token1")
        XCTAssertEqual(h.records.last?.detail?.hasPrefix("door=web mode=read-only token="), true)
        XCTAssertEqual(h.records.last?.detail?.hasSuffix("minted-by=admin-tcp 127.0.0.1:41000"), true)
        h.take()
        let typed = h.client(id, types: Array("reboot\r".utf8))
        XCTAssertFalse(typed.contains { if case .send(vm, _) = $0 { return true }; return false })
        XCTAssertEqual(h.notices[id]?.last, "read-only: what you type does not reach the VM")
    }

    func testTheTokenIsSingleUseAndItsBrowserMayReloadWithinAMinute() throws {
        let h = ConcentratorHarness()
        h.bringUpVM()
        _ = mint(h)
        let id = try open(h, token: "token1")
        let hash = ConcentratorHarness.hash("token1")
        // A second browser is refused the page and the socket; a second socket of the same browser too.
        XCTAssertEqual(h.answer { $0.openConsolePage(hash: hash, cookie: nil, newCookie: "other", address: "203.0.113.9", now: $1) }.failure, .used)
        XCTAssertEqual(h.answer { $0.claimConsole(hash: hash, cookie: "cookie-1", address: "192.0.2.50", now: $1) }.failure, .inUse)
        // Closed: the same browser takes it again within the minute (a reload)...
        h.send(.clientClosed(id))
        h.advance(by: 30)
        XCTAssertNoThrow(try h.answer { $0.claimConsole(hash: hash, cookie: "cookie-1", address: "192.0.2.50", now: $1) }.get())
        h.answer { $0.releaseConsole(hash: hash, now: $1) }
        // ... and not after it.
        h.advance(by: 61)
        XCTAssertEqual(h.answer { $0.claimConsole(hash: hash, cookie: "cookie-1", address: "192.0.2.50", now: $1) }.failure, .used)
    }

    func testABrowserThatStopsReadingIsDroppedAndRecorded() throws {
        let h = ConcentratorHarness()
        h.bringUpVM()
        _ = mint(h)
        let id = try open(h, token: "token1")
        h.take()
        // Its sink reports the bound crossed, as a channel's high water mark does: dropped, recorded, closed.
        let acts = h.send(.writabilityChanged(id, writable: false))
        XCTAssertEqual(acts.records.first?.kind, .clientDropped)
        XCTAssertEqual(acts.records.first?.detail?.contains("door=web mode=read-write token="), true)
        XCTAssertTrue(acts.contains(.close(id, flush: false)))
    }

    func testASessionRefusedAfterItsClaimLeavesTheTokenToItsBrowser() throws {
        let h = ConcentratorHarness()
        h.bringUpVM()
        _ = mint(h)
        let hash = ConcentratorHarness.hash("token1")
        _ = try h.answer { $0.openConsolePage(hash: hash, cookie: nil, newCookie: "c", address: "a", now: $1) }.get()
        let grant = try h.answer { $0.claimConsole(hash: hash, cookie: "c", address: "a", now: $1) }.get()
        XCTAssertEqual(h.admin(AdminRequest(command: "forget", vm: "web01", force: true)).response?.ok, true)
        let id = h.newConnection(.client)
        h.send(.sessionStarted(id, door: .web, peer: "192.0.2.50:51000",
                               request: SessionRequest(target: .console(grant.console), principal: .token(grant, hash: hash))))
        XCTAssertEqual(h.closed[id], false)
        XCTAssertNoThrow(try h.answer { $0.claimConsole(hash: hash, cookie: "c", address: "a", now: $1) }.get())
    }

    func testATokenExpiresAndItsConsoleMayBeGone() throws {
        let h = ConcentratorHarness()
        h.bringUpVM()
        _ = mint(h)
        let hash = ConcentratorHarness.hash("token1")
        h.advance(by: 301)
        XCTAssertEqual(h.answer { $0.openConsolePage(hash: hash, cookie: nil, newCookie: "c", address: "192.0.2.50", now: $1) }.failure, .expired)
        XCTAssertEqual(Door.named("web"), .web)
        XCTAssertNil(Door.web.notice("x"), "the web door's notices are never inline bytes")
        XCTAssertEqual(Door.ssh.notice("x"), Array("\r\n[vspcd: x]\r\n".utf8))
    }
}
