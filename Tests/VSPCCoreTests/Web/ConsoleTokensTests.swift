import XCTest
@testable import VSPCCore

/// The one-time console URLs' table: single use, the cookie's reload grace, expiry, mode, bounds.
final class ConsoleTokensTests: XCTestCase {
    let console = ConsoleKey(uuid: UUIDs.a, label: "")
    let second: Int64 = 1_000_000_000
    let start: Int64 = 1_000 * 1_000_000_000

    func mint(_ tokens: inout ConsoleTokens, _ hash: String = "aaaabbbbccccdddd", mode: AccessMode = .readWrite,
              ttl: Int = 600) -> ConsoleTokens.Grant? {
        try? tokens.mint(hash: hash, console: console, mode: mode, ttl: ttl, minter: "uid 1000 (alice)", now: start).get()
    }

    func testAFreshTokenOpensOnceAndItsBrowserTakesItsSessionOnce() throws {
        var tokens = ConsoleTokens()
        let grant = try XCTUnwrap(mint(&tokens, mode: .readOnly))
        XCTAssertEqual(grant, ConsoleTokens.Grant(id: "aaaabbbbcccc", console: console, mode: .readOnly, minter: "uid 1000 (alice)"))
        // The first page load binds the token to the browser's new cookie.
        let opened = try tokens.open(hash: "aaaabbbbccccdddd", cookie: nil, newCookie: "c1", address: "192.0.2.1", now: start).get()
        XCTAssertTrue(opened.setCookie)
        XCTAssertEqual(opened.grant.mode, .readOnly)
        // Another browser (no cookie, or another) is refused the page and the socket.
        XCTAssertEqual(tokens.open(hash: "aaaabbbbccccdddd", cookie: nil, newCookie: "c2", address: "192.0.2.2", now: start).failure, .used)
        XCTAssertEqual(tokens.claim(hash: "aaaabbbbccccdddd", cookie: "c2", address: "192.0.2.2", now: start).failure, .used)
        // The browser that opened it takes the session; a second socket while it is open is refused.
        XCTAssertEqual(try tokens.claim(hash: "aaaabbbbccccdddd", cookie: "c1", address: "192.0.2.1", now: start).get(), grant)
        XCTAssertEqual(tokens.claim(hash: "aaaabbbbccccdddd", cookie: "c1", address: "192.0.2.1", now: start).failure, .inUse)
        XCTAssertEqual(tokens.peek(hash: "aaaabbbbccccdddd", cookie: "c1", address: "192.0.2.1", now: start), .inUse)
        XCTAssertEqual(tokens.peek(hash: "aaaabbbbccccdddd", cookie: nil, address: "192.0.2.1", now: start), .used)
    }

    func testAReloadWithinAMinuteResumesInTheSameBrowserOnly() throws {
        var tokens = ConsoleTokens()
        _ = mint(&tokens)
        _ = try tokens.open(hash: "aaaabbbbccccdddd", cookie: nil, newCookie: "c1", address: "a", now: start).get()
        _ = try tokens.claim(hash: "aaaabbbbccccdddd", cookie: "c1", address: "a", now: start).get()
        tokens.release(hash: "aaaabbbbccccdddd", now: start + 10 * second)
        // The same browser reloads: the page, then the socket.
        let again = try tokens.open(hash: "aaaabbbbccccdddd", cookie: "c1", newCookie: "c3", address: "a", now: start + 30 * second).get()
        XCTAssertFalse(again.setCookie)
        XCTAssertNoThrow(try tokens.claim(hash: "aaaabbbbccccdddd", cookie: "c1", address: "a", now: start + 31 * second).get())
        // Closed again, and more than a minute later: over, for that browser too.
        tokens.release(hash: "aaaabbbbccccdddd", now: start + 40 * second)
        XCTAssertEqual(tokens.claim(hash: "aaaabbbbccccdddd", cookie: "c1", address: "a", now: start + 101 * second).failure, .used)
        XCTAssertEqual(tokens.open(hash: "aaaabbbbccccdddd", cookie: "c1", newCookie: "c4", address: "a", now: start + 101 * second).failure, .used)
        // A socket without the page's cookie never takes a fresh token either.
        _ = mint(&tokens, "eeeeffff00001111")
        XCTAssertEqual(tokens.claim(hash: "eeeeffff00001111", cookie: nil, address: "a", now: start).failure, .used)
    }

    func testAnExpiredTokenIsRefusedAndSweptButAnOpenSessionIsKept() throws {
        var tokens = ConsoleTokens()
        _ = mint(&tokens, ttl: 60)
        _ = mint(&tokens, "eeeeffff00001111", ttl: 60)
        _ = try tokens.open(hash: "eeeeffff00001111", cookie: nil, newCookie: "c", address: "a", now: start).get()
        _ = try tokens.claim(hash: "eeeeffff00001111", cookie: "c", address: "a", now: start).get()
        XCTAssertEqual(tokens.open(hash: "aaaabbbbccccdddd", cookie: nil, newCookie: "c1", address: "a", now: start + 60 * second).failure, .expired)
        // Kept for an hour past its expiry (its URL says "expired"), then forgotten.
        tokens.sweep(now: start + 61 * second)
        XCTAssertEqual(tokens.count, 2)
        tokens.sweep(now: start + 61 * second + ConsoleTokens.keepExpired)
        XCTAssertEqual(tokens.count, 1)
        XCTAssertEqual(tokens.open(hash: "aaaabbbbccccdddd", cookie: nil, newCookie: "c1", address: "b",
                                   now: start + 61 * second + ConsoleTokens.keepExpired).failure, .unknown)
    }

    func testTenFailedTokensAMinuteFromOneAddressAreAnsweredTooManyRequests() {
        var tokens = ConsoleTokens()
        _ = mint(&tokens)
        for n in 0..<ConsoleTokens.failuresPerMinute {
            XCTAssertEqual(tokens.open(hash: "guess\(n)", cookie: nil, newCookie: "c", address: "198.51.100.9", now: start).failure, .unknown)
        }
        // Even the right token is refused from there now; other addresses are not affected.
        XCTAssertEqual(tokens.open(hash: "aaaabbbbccccdddd", cookie: nil, newCookie: "c", address: "198.51.100.9", now: start).failure, .limited)
        XCTAssertEqual(ConsoleTokens.Refusal.limited.status, 429)
        XCTAssertNoThrow(try tokens.open(hash: "aaaabbbbccccdddd", cookie: nil, newCookie: "c", address: "192.0.2.1", now: start).get())
        // A minute later the address may try again.
        XCTAssertEqual(tokens.open(hash: "guess", cookie: nil, newCookie: "c", address: "198.51.100.9", now: start + 60 * second).failure, .unknown)
    }

    func testTheTableIsBoundedAndTheTTLClamped() {
        var tokens = ConsoleTokens()
        for n in 0..<ConsoleTokens.maxTokens { _ = mint(&tokens, String(format: "%016x", n), ttl: 60) }
        XCTAssertEqual(tokens.mint(hash: "one-more-token-x", console: console, mode: .readWrite, ttl: 60, minter: "m", now: start).failure, .full)
        // Once the others expire, a sweep makes room.
        XCTAssertNoThrow(try tokens.mint(hash: "one-more-token-x", console: console, mode: .readWrite, ttl: 1_000_000,
                                         minter: "m", now: start + 61 * second).get())
        XCTAssertEqual(tokens.count, 1)
        XCTAssertEqual(tokens.entries["one-more-token-x"]?.expires, start + 61 * second + Int64(ConsoleTokens.maxTTL) * second)
    }

    func testPublicBasesAndOrigins() {
        let base = WebOrigin.parseBase("https://VSPC.example.com/ops/")
        XCTAssertEqual(base?.origin, "https://vspc.example.com")
        XCTAssertEqual(base?.text, "https://vspc.example.com/ops")
        XCTAssertEqual(WebOrigin.parseBase("http://[::1]:8080")?.origin, "http://[::1]:8080")
        for bad in ["ftp://x", "https://", "https://x/?q=1", "https://u@x", "x.example.com", "https://x y"] {
            XCTAssertNil(WebOrigin.parseBase(bad), bad)
        }
        XCTAssertTrue(WebOrigin.allows(origin: "http://127.0.0.1:9779", host: "127.0.0.1:9779", publicBase: nil))
        XCTAssertTrue(WebOrigin.allows(origin: "https://vspc.example.com", host: "127.0.0.1:9779", publicBase: base))
        XCTAssertFalse(WebOrigin.allows(origin: "http://evil.example", host: "127.0.0.1:9779", publicBase: base))
        XCTAssertFalse(WebOrigin.allows(origin: nil, host: "127.0.0.1:9779", publicBase: nil))
        XCTAssertFalse(WebOrigin.allows(origin: "null", host: "127.0.0.1:9779", publicBase: nil))
        XCTAssertFalse(WebOrigin.allows(origin: "http://127.0.0.1:9779", host: nil, publicBase: nil))
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
