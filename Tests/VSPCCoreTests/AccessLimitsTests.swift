import Foundation
import XCTest
@testable import VSPCCore

/// `from=` and `expiry-time=` of authorized keys, and the per-source limits of the SSH door (issue 14 items 4, 7).
final class AccessLimitsTests: XCTestCase {
    let utc = TimeZone(identifier: "UTC")!

    private func address(_ text: String) -> IPAddress { IPAddress(text)! }

    private func list(_ text: String) throws -> AddressPatternList {
        try AddressPatternList.parse(text).get()
    }

    func testFromPatterns() throws {
        let nets = try list("10.1.0.0/16, 192.0.2.7 ,2001:db8::/32")
        XCTAssertTrue(nets.allows(address("10.1.200.3")))
        XCTAssertTrue(nets.allows(address("::ffff:10.1.0.1")), "an IPv4 client seen through an IPv6 socket")
        XCTAssertTrue(nets.allows(address("192.0.2.7")))
        XCTAssertFalse(nets.allows(address("192.0.2.8")))
        XCTAssertTrue(nets.allows(address("2001:db8:1::5")))
        XCTAssertFalse(nets.allows(address("2001:db9::5")))
        XCTAssertFalse(nets.allows(nil), "an unknown address never matches")

        let negated = try list("!10.1.2.0/24,10.0.0.0/8")
        XCTAssertTrue(negated.allows(address("10.9.9.9")))
        XCTAssertFalse(negated.allows(address("10.1.2.3")), "a negated match refuses whatever else matches")
        XCTAssertFalse(negated.allows(address("11.0.0.1")))
        XCTAssertFalse(try list("!10.1.2.3").allows(address("10.9.9.9")), "only negations: nothing matches positively")

        let wild = try list("10.1.*,192.0.2.?,!10.1.2.*")
        XCTAssertTrue(wild.allows(address("10.1.77.1")))
        XCTAssertFalse(wild.allows(address("10.1.2.1")))
        XCTAssertTrue(wild.allows(address("192.0.2.5")))
        XCTAssertFalse(wild.allows(address("192.0.2.50")))
        XCTAssertFalse(try list("*").allows(address("2001:db8::1")), "IPv4 wildcards never match an IPv6 client")
        XCTAssertTrue(try list("*").allows(address("127.0.0.2")))
    }

    func testExpiryTimes() throws {
        let day = try ExpiryTime.parse("20300101").get()
        XCTAssertEqual(day.date(localTimeZone: utc), Date(timeIntervalSince1970: 1_893_456_000))
        let minute = try ExpiryTime.parse("203001011230").get()
        XCTAssertEqual(minute.date(localTimeZone: utc), Date(timeIntervalSince1970: 1_893_456_000 + 12 * 3600 + 30 * 60))
        let second = try ExpiryTime.parse("20300101123005Z").get()
        XCTAssertTrue(second.utc)
        let paris = TimeZone(identifier: "Europe/Paris")!
        XCTAssertEqual(second.date(localTimeZone: paris), Date(timeIntervalSince1970: 1_893_456_000 + 45005), "Z: UTC")
        XCTAssertEqual(minute.date(localTimeZone: paris), Date(timeIntervalSince1970: 1_893_456_000 + 45000 - 3600),
                       "without Z: the server's local time")
        XCTAssertTrue(try ExpiryTime.parse("20240229").get().year == 2024, "a leap day")
        for bad in ["2030010", "203001011", "2030-01-01", "20301301", "20300132", "20300101246000", "19690101", "", "Z"] {
            XCTAssertThrowsError(try ExpiryTime.parse(bad).get(), bad)
        }
        XCTAssertFalse(day.hasPassed(at: Date(timeIntervalSince1970: 1_893_455_999), localTimeZone: utc))
        XCTAssertTrue(day.hasPassed(at: Date(timeIntervalSince1970: 1_893_456_000), localTimeZone: utc))
    }

    /// Like OpenSSH, the first line holding the key whose from= and expiry-time= let the client in decides.
    func testAuthorizeByAddressAndTime() throws {
        let k = TestKeys.ed25519
        let blob = TestKeys.blob(k)
        let file = """
            from="127.0.0.2",read-only ssh-ed25519 \(k) from-two
            expiry-time="20200101Z" ssh-ed25519 \(k) expired
            from="!127.0.0.3,127.0.0.0/8" ssh-ed25519 \(k) loopback
            """
        let keys = AuthorizedKeys.parse(file)
        XCTAssertEqual(keys.problems, [])
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        guard case .granted(let two) = keys.authorize(blob: blob, address: address("127.0.0.2"), now: now, timeZone: utc)
        else { return XCTFail("127.0.0.2 gets the first line") }
        XCTAssertEqual(two.comment, "from-two")
        XCTAssertTrue(two.readOnly)
        guard case .granted(let one) = keys.authorize(blob: blob, address: address("127.0.0.1"), now: now, timeZone: utc)
        else { return XCTFail("127.0.0.1 gets the third line") }
        XCTAssertEqual(one.comment, "loopback")
        XCTAssertEqual(keys.authorize(blob: blob, address: address("127.0.0.3"), now: now, timeZone: utc), .refused([
            #"line 1: the client's address 127.0.0.3 is not in from="127.0.0.2""#,
            "line 2: the key expired at 20200101Z (expiry-time)",
            #"line 3: the client's address 127.0.0.3 is not in from="!127.0.0.3,127.0.0.0/8""#,
        ]))
        let early = Date(timeIntervalSince1970: 1_500_000_000)
        guard case .granted(let notYet) = keys.authorize(blob: blob, address: address("127.0.0.3"), now: early, timeZone: utc)
        else { return XCTFail("before its expiry the second line lets anyone in") }
        XCTAssertEqual(notYet.comment, "expired")
        XCTAssertEqual(keys.authorize(blob: TestKeys.blob(TestKeys.p256), address: nil, now: now, timeZone: utc), .unknownKey)
    }

    func testMaxStartups() {
        XCTAssertEqual(MaxStartups.parse("10:30:64"), MaxStartups(start: 10, rate: 30, full: 64))
        XCTAssertEqual(MaxStartups.parse("20"), MaxStartups(start: 20, rate: 100, full: 20))
        for bad in ["", "10:30", "10:30:5", "0:30:64", "10:101:64", "a:b:c", "10::64", "-1"] {
            XCTAssertNil(MaxStartups.parse(bad), bad)
        }
        let m = MaxStartups(start: 10, rate: 30, full: 64)
        XCTAssertEqual(m.dropProbability(waiting: 9), 0)
        XCTAssertEqual(m.dropProbability(waiting: 10), 0.3, accuracy: 1e-9)
        XCTAssertEqual(m.dropProbability(waiting: 37), 0.65, accuracy: 1e-9)
        XCTAssertEqual(m.dropProbability(waiting: 64), 1)
    }

    /// Issue 14 item 7: one address held every pre-authentication slot. Now it holds at most its own share.
    func testPerSourceStartupsAndEarlyDrop() {
        var settings = SourceLimitSettings()
        settings.startups = MaxStartups(start: 10, rate: 30, full: 64)
        settings.perSourceStartups = 8
        var admission = SourceAdmission(settings: settings)
        let attacker = SourceKey(address("127.0.0.2"))
        let person = SourceKey(address("127.0.0.1"))
        for _ in 0..<8 { XCTAssertNil(admission.admit(attacker, now: 0, random: 0.99)) }
        for _ in 0..<56 { XCTAssertEqual(admission.admit(attacker, now: 0, random: 0.99), .perSourceStartups(limit: 8)) }
        XCTAssertEqual(admission.waiting, 8)
        XCTAssertNil(admission.admit(person, now: 0, random: 0), "another address gets in at once")
        // An IPv6 /64 is one source.
        let v6 = [SourceKey(address("2001:db8::1")), SourceKey(address("2001:db8::ffff:2"))]
        XCTAssertEqual(v6[0], v6[1])
        XCTAssertEqual(v6[0].description, "2001:db8:0:0:0:0:0:0/64")
        // Random early drop between start and full, decided by the random number passed in.
        admission.authenticated(person)
        for i in 0..<2 { XCTAssertNil(admission.admit(SourceKey(address("10.0.0.\(i)")), now: 0, random: 0.5)) }
        XCTAssertEqual(admission.waiting, 10)
        XCTAssertEqual(admission.admit(SourceKey(address("10.0.1.1")), now: 0, random: 0.29), .earlyDrop(waiting: 10))
        XCTAssertNil(admission.admit(SourceKey(address("10.0.1.1")), now: 0, random: 0.31))
        for i in 0..<8 { admission.closed(attacker, waiting: true, failed: false, now: 0); _ = i }
        XCTAssertEqual(admission.waiting(from: attacker), 0)
        XCTAssertEqual(admission.waiting, 3)
    }

    func testGlobalBound() {
        var settings = SourceLimitSettings()
        settings.startups = MaxStartups(start: 3, rate: 100, full: 3)
        var admission = SourceAdmission(settings: settings)
        for i in 0..<3 { XCTAssertNil(admission.admit(SourceKey(address("10.0.0.\(i)")), now: 0, random: 0)) }
        XCTAssertEqual(admission.admit(SourceKey(address("10.0.0.9")), now: 0, random: 0.99), .full(limit: 3))
    }

    func testFailuresPerSourceInASlidingWindow() {
        var settings = SourceLimitSettings()
        settings.perSourceFailures = 3
        settings.failureWindow = 60
        settings.maxTrackedSources = 4
        var admission = SourceAdmission(settings: settings)
        let guesser = SourceKey(address("127.0.0.2"))
        for t in [0.0, 10, 20] {
            XCTAssertNil(admission.admit(guesser, now: t, random: 0))
            admission.closed(guesser, waiting: true, failed: true, now: t)
        }
        XCTAssertEqual(admission.admit(guesser, now: 30, random: 0), .perSourceFailures(limit: 3, window: 60))
        XCTAssertNil(admission.admit(SourceKey(address("127.0.0.1")), now: 30, random: 0), "others are not affected")
        XCTAssertNil(admission.admit(guesser, now: 60.5, random: 0), "the first failure left the window")
        admission.closed(guesser, waiting: true, failed: false, now: 61)
        // The table of sources stays bounded whatever the number of addresses.
        for i in 0..<100 {
            let source = SourceKey(address("10.9.\(i / 256).\(i % 256)"))
            XCTAssertNil(admission.admit(source, now: 62, random: 0))
            admission.closed(source, waiting: true, failed: true, now: 62)
        }
        XCTAssertLessThanOrEqual(admission.trackedSources, 4)
    }

    /// Refusals are logged at most once a minute per address, at most `capacity` addresses a minute, with a summary.
    func testRefusalLogIsBounded() {
        var log = RefusalLog(interval: 60, capacity: 2)
        let a = SourceKey(address("127.0.0.2"))
        XCTAssertEqual(log.refused(a, reason: "8 connections from this address are waiting to authenticate", now: 0),
                       "connection from 127.0.0.2 refused: 8 connections from this address are waiting to authenticate "
                       + "(further refusals of this address are counted, not logged, for 60 s)")
        for t in 1...55 { XCTAssertNil(log.refused(a, reason: "x", now: Double(t))) }
        XCTAssertNotNil(log.refused(SourceKey(address("10.0.0.1")), reason: "x", now: 5))
        for i in 0..<1000 { XCTAssertNil(log.refused(SourceKey(address("10.1.\(i / 256).\(i % 256)")), reason: "x", now: 6)) }
        XCTAssertEqual(log.tick(now: 59),
                       "1055 more connections refused in the last 60 s (127.0.0.2: 55, 1000 from addresses not logged one by one)")
        XCTAssertNil(log.tick(now: 70), "nothing new")
        XCTAssertNotNil(log.refused(a, reason: "x", now: 61), "a minute after its line, the address is logged again")
    }
}
