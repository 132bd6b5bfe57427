import Foundation
import XCTest
@testable import VSPCCore

/// `vspc history` through the daemon: the VM is resolved against the records and the live consoles, then its
/// events are read; both reads are actions the driver runs off the event loop.
final class ConcentratorHistoryTests: XCTestCase {
    let t0 = MockClock.originDate.addingTimeInterval(-3600)

    private func ask(_ h: ConcentratorHarness, _ request: AdminRequest) -> (ConnectionID, [ConcentratorAction]) {
        let id = h.newConnection(.admin)
        h.send(.adminConnected(id))
        return (id, h.send(.adminLine(id, Array(try! JSONEncoder().encode(request)))))
    }

    private func response(_ h: ConcentratorHarness, _ id: ConnectionID) -> AdminResponse? {
        let out = h.takeOutput(id)
        guard let newline = out.firstIndex(of: 0x0A) else { return nil }
        return try? JSONDecoder().decode(AdminResponse.self, from: Data(out[..<newline]))
    }

    func testAnOldNameFindsTheVMAndItsEventsComeBack() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.a, name: "web01")
        let (id, asked) = ask(h, AdminRequest(command: "history", vm: "web-old", limit: 5))
        XCTAssertEqual(asked, [.query(id, .knownConsoles)])
        XCTAssertEqual(h.send(.adminLine(id, Array(#"{"version":1,"command":"list"}"#.utf8))), [],
                       "one request per connection, even while its answer is being read")
        let stored = [ConsoleCandidate(uuid: UUIDs.a, name: "web01", port: 50000, lastSeen: t0),
                      ConsoleCandidate(uuid: UUIDs.a, name: "web-old", lastSeen: t0)]
        XCTAssertEqual(h.send(.queryAnswered(id, .knownConsoles(stored))),
                       [.query(id, .events(uuid: UUIDs.a, label: nil, since: nil, limit: 5))])
        let events = [ConsoleEvent(id: 1, time: t0, kind: "vm-connect", uuid: UUIDs.a, name: "web-old"),
                      ConsoleEvent(id: 2, time: t0, kind: "name-change", uuid: UUIDs.a, name: "web01")]
        h.send(.queryAnswered(id, .events(events)))
        let answer = response(h, id)
        XCTAssertEqual(answer?.ok, true)
        XCTAssertEqual(answer?.history, HistoryAnswer(uuid: UUIDs.a, name: "web01", events: events))
        XCTAssertEqual(h.closed[id], true)
    }

    func testAVMThatHoldsNoPortIsFoundInTheRecords() {
        let h = ConcentratorHarness()
        let since = Date(timeIntervalSince1970: 1_800_000_000.25)
        let (id, _) = ask(h, AdminRequest(command: "history", vm: UUIDs.b, since: AdminProtocol.preciseTimestamp(since)))
        XCTAssertEqual(h.send(.queryAnswered(id, .knownConsoles([ConsoleCandidate(uuid: UUIDs.b, name: "gone", lastSeen: t0)]))),
                       [.query(id, .events(uuid: UUIDs.b, label: nil, since: since, limit: AdminProtocol.maxHistoryEvents))])
    }

    func testRefusals() {
        let h = ConcentratorHarness()
        let (unknown, _) = ask(h, AdminRequest(command: "history", vm: "nope"))
        h.send(.queryAnswered(unknown, .knownConsoles([])))
        XCTAssertEqual(response(h, unknown)?.error, #"no VM matches "nope""#)

        let (broken, _) = ask(h, AdminRequest(command: "history", vm: "nope"))
        h.send(.queryAnswered(broken, .failed(StoreFailure(.busy, "database is locked"))))
        XCTAssertEqual(response(h, broken)?.error, "cannot read the history: database is locked")

        // An answer for a client that left is dropped.
        let (gone, _) = ask(h, AdminRequest(command: "history", vm: "nope"))
        h.send(.adminClosed(gone))
        XCTAssertEqual(h.send(.queryAnswered(gone, .knownConsoles([]))), [])

        let (limit, _) = ask(h, AdminRequest(command: "history", vm: "x", limit: 0))
        XCTAssertEqual(response(h, limit)?.error, "limit must be a positive number")
        let (since, _) = ask(h, AdminRequest(command: "history", vm: "x", since: "yesterday"))
        XCTAssertEqual(response(h, since)?.error, "since must be an ISO 8601 time")
        let (noVM, _) = ask(h, AdminRequest(command: "history"))
        XCTAssertEqual(response(h, noVM)?.error, "history needs a vm")
    }
}
