import XCTest
@testable import VSPCCore

/// Issue 14: the proxy port against a network stranger (items 1, 12-17), in the core with a mock clock.
final class ConcentratorProxyGuardTests: XCTestCase {
    private let keyA = ConsoleKey(uuid: UUIDs.a, label: "")

    /// Item 1: a console's connection that is backed up is read again when another claims the console; that it
    /// sends anything keeps it the console's, and what it sent is discarded.
    func testABackedUpConnectionThatIsAliveKeepsItsConsole() {
        let h = ConcentratorHarness()
        let holder = h.bringUpVM()
        h.send(.writabilityChanged(holder, writable: false))
        h.take()
        let newcomer = h.bringUpVM(peer: "10.0.0.66:1")
        XCTAssertTrue(h.take().contains(.setReading(holder, true)), "read again, to see whether it is alive")
        // Anything at all from it (here console output, not the probe's answer) proves it alive.
        let acts = h.vm(holder, says: Array("still booting".utf8))
        XCTAssertEqual(acts.filter { if case .broadcast = $0 { return true }; return false }, [], "discarded")
        XCTAssertTrue(acts.contains(.setReading(holder, false)))
        XCTAssertEqual(h.closed[newcomer], false, "the newcomer is refused")
        XCTAssertEqual(acts.recordKinds, [.vmTakeoverRefused])
        XCTAssertEqual(h.list().first?.connected, true)
        h.advance(by: h.config.takeoverProbeTimeout + 1)
        XCTAssertNil(h.closed[holder], "the live connection keeps the console")
    }

    /// Item 1: a backed-up connection that stays silent is replaced, as before.
    func testABackedUpSilentConnectionIsReplaced() {
        let h = ConcentratorHarness()
        let holder = h.bringUpVM()
        h.send(.writabilityChanged(holder, writable: false))
        let newcomer = h.bringUpVM(peer: "10.0.0.66:1")
        h.advance(by: h.config.takeoverProbeTimeout + 1)
        XCTAssertEqual(h.closed[holder], false)
        XCTAssertNil(h.closed[newcomer])
    }

    /// Item 12: connections that never identify are bounded per address and in total; others still get in.
    func testUnidentifiedConnectionsAreBoundedPerAddressAndInTotal() {
        var config = ConcentratorConfig.forTests
        config.maxUnidentifiedPerAddress = 3
        config.maxUnidentified = 5
        let h = ConcentratorHarness(config: config)
        // Half-open: each agrees to VMware's extension, then says nothing more.
        func silent(_ peer: String) -> ConnectionID {
            let id = h.connectVM(peer: peer)
            h.negotiate(id)
            return id
        }
        let idle = (0..<3).map { silent("192.0.2.2:\(1000 + $0)") }
        XCTAssertTrue(idle.allSatisfy { h.closed[$0] == nil })
        // A burst of fresh connections never counts: each identifies in milliseconds.
        let fresh = h.connectVM(peer: "192.0.2.2:1999")
        XCTAssertNil(h.closed[fresh])
        h.send(.vmClosed(fresh))
        h.advance(by: config.identifyGrace + 0.5)
        h.take()
        let fourth = h.connectVM(peer: "192.0.2.2:2000")
        XCTAssertEqual(h.closed[fourth], false, "a fourth from the same address is refused at once")
        XCTAssertTrue(h.take().logs.contains { $0.message.contains("refused proxy connection from 192.0.2.2:2000") })
        // A real VM from another address identifies, and no longer counts.
        h.bringUpVM()
        XCTAssertEqual(h.list().count, 1)
        let more = (0..<2).map { silent("192.0.2.3:\(1000 + $0)") }
        XCTAssertTrue(more.allSatisfy { h.closed[$0] == nil })
        h.advance(by: config.identifyGrace + 0.5)
        let overTotal = h.connectVM(peer: "192.0.2.4:1")
        XCTAssertEqual(h.closed[overTotal], false, "the total is reached")
        // They are closed after the identify timeout, and their places come back.
        h.advance(by: config.identifyTimeout)
        XCTAssertTrue((idle + more).allSatisfy { h.closed[$0] == false })
        let later = h.connectVM(peer: "192.0.2.2:3000")
        XCTAssertNil(h.closed[later])
        XCTAssertEqual(h.machine.tallies.vmDisconnects[.refused], 2)
        XCTAssertEqual(h.machine.tallies.vmDisconnects[.timeout], 5)
    }

    /// Item 13: made-up uuids from one address take at most `newAssignmentsPerMinute` ports a minute, and the
    /// pool's reserve is kept for addresses that already own assignments: a stranger's first port never comes
    /// from it.
    func testNewAssignmentsAreRateLimitedAndTheReserveIsKept() {
        var config = ConcentratorConfig.forTests
        config.newAssignmentsPerMinute = 3
        config.portRange = 20000...20009
        config.portReserveFraction = 0.3
        let h = ConcentratorHarness(config: config)
        let uuids = (0..<11).map { String(format: "%032x", 0xA000 + $0) }
        func bring(_ range: Range<Int>, from host: String) {
            for i in range { h.bringUpVM(uuids[i], name: "vm-\(i)", peer: "\(host):\(i + 1)") }
        }
        bring(0..<4, from: "192.0.2.9")
        XCTAssertEqual(h.list().count, 3)
        XCTAssertEqual(h.records.filter { $0.kind == .portRefused }.map(\.detail),
                       ["3 new port assignments from this address in the last minute (the limit)"])
        // The next minutes: strangers stop where only the reserve (3 of 10) is left...
        h.advance(by: 61)
        bring(4..<7, from: "192.0.2.10")
        h.advance(by: 61)
        h.take()
        bring(7..<8, from: "192.0.2.11")
        bring(8..<9, from: "192.0.2.12")
        bring(9..<10, from: "192.0.2.13")
        XCTAssertEqual(h.list().count, 7)
        XCTAssertEqual(h.records.filter { $0.kind == .portRefused }.map(\.detail),
                       Array(repeating: "only 3 ports are left, kept for hosts that already carry consoles", count: 2))
        // ... and a host that already carries a console may still use it.
        bring(10..<11, from: "192.0.2.9")
        XCTAssertEqual(h.list().count, 8)
    }

    /// Item 14: tightening `--proxy-allow` on a reload closes the connections it no longer allows, each on record.
    func testTighteningTheAllowListClosesExcludedConnections() throws {
        let h = ConcentratorHarness()
        let inside = h.bringUpVM(UUIDs.a, name: "web01", peer: "10.1.0.5:900")
        let outside = h.bringUpVM(UUIDs.b, name: "db01", peer: "192.0.2.5:900")
        h.take()
        h.send(.reconfigure(vmExpireTime: h.config.vmExpireTime, retention: h.config.retention,
                            proxyAllow: try AddressAllowList.parse("10.0.0.0/8").get()))
        XCTAssertNil(h.closed[inside])
        XCTAssertEqual(h.closed[outside], false)
        XCTAssertEqual(h.records.filter { $0.kind == .vmDisconnect }.map(\.detail), ["no longer in --proxy-allow"])
        XCTAssertEqual(h.records.first { $0.kind == .vmDisconnect }?.name, "db01")
    }

    /// Item 15: an empty list is an error; `any` is the explicit "everyone".
    func testAnEmptyAllowListIsAnErrorAndAnyIsExplicit() {
        for text in ["", " ", ",", " , "] {
            guard case .failure(let error) = AddressAllowList.parse(text) else { return XCTFail("\(text.debugDescription) parsed") }
            XCTAssertEqual(error.message, "names no network; give CIDR[,CIDR...], or any to allow every address")
        }
        XCTAssertEqual(try AddressAllowList.parse("any").get(), AddressAllowList())
        XCTAssertEqual(try AddressAllowList.parse(" ANY ").get().allowsEveryone, true)
    }

    /// Item 16: a key removed from the file goes back to its default, and the log line says what is in force.
    func testAReloadThatRemovesAKeyAppliesItsDefault() {
        var running = DaemonSettings()
        running.proxyAllow = "10.0.0.0/8"
        let plan = DaemonSettings.planReload(running: running, reloaded: DaemonSettings())
        XCTAssertEqual(plan.summary, "reloaded: proxy-allow \"10.0.0.0/8\" -> (unset)")
        XCTAssertNil(plan.settings.proxyAllow, "no longer in force")
        XCTAssertEqual(DaemonSettings.planReload(running: plan.settings, reloaded: DaemonSettings()).summary,
                       "reloaded: no change", "and a later reload does not repeat the claim")
    }

    /// Item 17: refusals from 5,000 addresses make a bounded number of lines, with the rest counted.
    func testRefusalLinesAreBoundedWhateverTheAddresses() throws {
        var config = ConcentratorConfig.forTests
        config.proxyAllow = try AddressAllowList.parse("10.0.0.0/8").get()
        let h = ConcentratorHarness(config: config)
        for i in 0..<10_000 {
            let a = (i / 2) % 5000
            h.connectVM(peer: "198.\(18 + a / 65536).\((a / 256) % 256).\(a % 256):\(i)")
        }
        var lines = h.take().logs.filter { $0.message.hasPrefix("refused proxy connection") }
        XCTAssertEqual(lines.count, 64)
        h.advance(by: 61)
        h.connectVM(peer: "198.18.0.1:1")
        lines = h.take().logs.filter { $0.message.contains("more refused proxy connections") }
        XCTAssertEqual(lines.map(\.message), ["… 9,936 more refused proxy connections in the last minute"])
    }
}
