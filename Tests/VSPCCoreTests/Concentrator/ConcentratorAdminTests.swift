import Foundation
import XCTest
@testable import VSPCCore

/// The admin endpoint: list, status, tail (backlog and follow), and the refusals.
final class ConcentratorAdminTests: XCTestCase {
    let keyA = ConsoleKey(uuid: UUIDs.a, label: "")

    private func line(_ json: String) -> [UInt8] { Array(json.utf8) }

    /// One request; asserts it was refused with `error` and closed after the answer left.
    private func assertRefused(_ h: ConcentratorHarness, _ raw: [UInt8], _ error: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        let reply = h.adminRaw(raw)
        XCTAssertEqual(reply.response?.ok, false, file: file, line: line)
        XCTAssertEqual(reply.response?.error, error, file: file, line: line)
        XCTAssertEqual(reply.response?.version, 1, file: file, line: line)
        XCTAssertEqual(reply.rest, [], file: file, line: line)
        XCTAssertEqual(h.closed[reply.id], true, "closed once the answer has left", file: file, line: line)
    }

    func testListShowsConsolesSortedWithTheirStateUnsavedOnesMarked() {
        let h = ConcentratorHarness()
        let t0 = h.clock.date
        h.bringUpVM(UUIDs.a, name: "web01", peer: "10.0.0.1:900")
        h.connectClient(keyA)
        let db = h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        h.advance(by: 3)
        h.send(.vmClosed(db))
        h.assignmentReply = { _ in .hold }
        h.bringUpVM(UUIDs.c, name: "app01", peer: "10.0.0.4:900") // its write has not committed: listed, unsaved
        XCTAssertEqual(h.list(), [
            ConsoleInfo(name: "app01", uuid: UUIDs.c, label: "", port: 20002, connected: true, clients: 0,
                        since: AdminProtocol.timestamp(t0.addingTimeInterval(3)), listening: true, listenError: nil,
                        migrating: false, peer: "10.0.0.4:900", saved: false),
            ConsoleInfo(name: "db01", uuid: UUIDs.b, label: "", port: 20001, connected: false, clients: 0,
                        since: AdminProtocol.timestamp(t0.addingTimeInterval(3)), listening: true, listenError: nil,
                        migrating: false, peer: nil),
            ConsoleInfo(name: "web01", uuid: UUIDs.a, label: "", port: 20000, connected: true, clients: 1,
                        since: AdminProtocol.timestamp(t0), listening: true, listenError: nil, migrating: false,
                        peer: "10.0.0.1:900"),
        ])
    }

    func testStatusCounts() {
        let h = ConcentratorHarness(baseline: 8)
        h.bringUpVM(UUIDs.a, name: "web01")
        h.connectClient(keyA)
        let db = h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        h.send(.vmClosed(db))
        let reply = h.admin(AdminRequest(command: "status"))
        XCTAssertEqual(reply.response?.ok, true)
        XCTAssertEqual(reply.response?.status?.fields, [
            "consoles": "2", "connected": "1", "clients": "1", "migrating": "0", "freePorts": "8",
            "descriptors": "13", "descriptorLimit": "1024", "startedAt": AdminProtocol.timestamp(MockClock.originDate),
        ])
        XCTAssertEqual(h.closed[reply.id], true)
    }

    func testTailSendsTheLastBytesOfScrollbackThenClosesAfterThem() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        h.vm(vm, says: Array("line1\r\nline2\r\n".utf8))
        let id = h.newConnection(.admin)
        XCTAssertEqual(h.send(.adminConnected(id)), [])
        let request = try! JSONEncoder().encode(AdminRequest(command: "tail", vm: "web01", bytes: 7))
        let acts = h.send(.adminLine(id, Array(request)))
        XCTAssertEqual(acts.count, 4)
        // Every attach is on record, the tail door's too (issue 9).
        XCTAssertEqual(Array(acts.dropFirst()), [
            .record(ConsoleEvent(kind: .clientAttach, time: h.clock.date, uuid: UUIDs.a, name: "web01", peer: "local",
                                 detail: "door=tail mode=read-only")),
            .send(id, Array("line2\r\n".utf8)), .close(id, flush: true),
        ])
        guard case .send(id, let answer) = acts.first, answer.last == 0x0A,
              let response = try? JSONDecoder().decode(AdminResponse.self, from: Data(answer.dropLast())) else {
            return XCTFail("no JSON answer line first: \(acts)")
        }
        XCTAssertEqual(answer.filter { $0 == 0x0A }.count, 1, "one line")
        XCTAssertEqual(response.ok, true)
        XCTAssertEqual(response.backlog, 7)
        XCTAssertEqual(response.vm?.name, "web01")
        XCTAssertEqual(response.vm?.port, 20000)
    }

    func testTailOfEverythingAndOfNothing() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        h.vm(vm, says: Array("abc".utf8))
        let all = h.admin(AdminRequest(command: "tail", vm: "web01"))
        XCTAssertEqual(all.response?.backlog, 3)
        XCTAssertEqual(all.rest, Array("abc".utf8))
        let none = h.admin(AdminRequest(command: "tail", vm: "web01", bytes: 0))
        XCTAssertEqual(none.response?.backlog, 0)
        XCTAssertEqual(none.rest, [])
        XCTAssertEqual(h.closed[none.id], true)
        // A negative count is refused by the request parser (issue 8: every field bounded).
        let negative = h.admin(AdminRequest(command: "tail", vm: "web01", bytes: -5))
        XCTAssertEqual(negative.response?.ok, false)
        XCTAssertEqual(negative.response?.error, "bytes must not be negative")
    }

    func testTailFollowStreamsLiveOutputUntilItCloses() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        h.vm(vm, says: Array("old".utf8))
        let follow = h.admin(AdminRequest(command: "tail", vm: "web01", bytes: 2, follow: true))
        XCTAssertEqual(follow.response?.backlog, 2)
        XCTAssertEqual(follow.rest, Array("ld".utf8))
        XCTAssertNil(h.closed[follow.id])
        XCTAssertEqual(h.vm(vm, says: [0x6E, 0xFF, 0xFF, 0x77]), [.broadcast([follow.id], [0x6E, 0xFF, 0x77])])
        // One request per connection: more lines are ignored.
        XCTAssertEqual(h.send(.adminLine(follow.id, line(#"{"version":1,"command":"list"}"#))), [])
        XCTAssertEqual(h.send(.adminLineTooLong(follow.id)), [])
        h.send(.adminClosed(follow.id))
        XCTAssertEqual(h.vm(vm, says: Array("gone".utf8)), [])
    }

    func testMalformedRequestsAreRefused() {
        let h = ConcentratorHarness()
        let malformed = "malformed request: expected one JSON object per line"
        assertRefused(h, line("list"), malformed)
        assertRefused(h, line("{}"), malformed)
        assertRefused(h, line(#"{"version":1}"#), malformed)
        assertRefused(h, line(#"{"version":"1","command":"list"}"#), malformed)
        assertRefused(h, [0xFF, 0xFE, 0x00], malformed)
        assertRefused(h, [], malformed)
    }

    func testWrongVersionUnknownCommandAndMissingVMAreRefused() {
        let h = ConcentratorHarness()
        assertRefused(h, line(#"{"version":2,"command":"list"}"#), "unsupported protocol version 2; this daemon speaks 1")
        assertRefused(h, line(#"{"version":1,"command":"frobnicate"}"#), #"unknown command "frobnicate""#)
        assertRefused(h, line(#"{"version":1,"command":"forget"}"#), "forget needs a vm")
        assertRefused(h, line(#"{"version":1,"command":"tail"}"#), "tail needs a vm")
        assertRefused(h, line(#"{"version":1,"command":"tail","vm":""}"#), "tail needs a vm")
    }

    func testTooLongRequestIsRefused() {
        let h = ConcentratorHarness()
        let id = h.newConnection(.admin)
        h.send(.adminConnected(id))
        h.send(.adminLineTooLong(id))
        let out = h.takeOutput(id)
        let response = try? JSONDecoder().decode(AdminResponse.self, from: Data(out.dropLast()))
        XCTAssertEqual(response?.error, "request longer than 65536 bytes")
        XCTAssertEqual(h.closed[id], true)
    }

    func testTailOfAnUnknownOrAmbiguousVMIsRefused() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.a, name: "web01")
        h.bringUpVM(UUIDs.b, name: "web02", peer: "10.0.0.3:900")
        assertRefused(h, Array(try! JSONEncoder().encode(AdminRequest(command: "tail", vm: "nosuch"))),
                      #"no VM matches "nosuch""#)
        let ports = h.list().map(\.port)
        assertRefused(h, Array(try! JSONEncoder().encode(AdminRequest(command: "tail", vm: "web"))), """
            "web" is ambiguous; it names several consoles:
              web01  \(UUIDSpelling.classic(UUIDs.a))  port \(ports[0])  connected
              web02  \(UUIDSpelling.classic(UUIDs.b))  port \(ports[1])  connected
            """)
    }

    /// Issue 8: a console whose assignment the disk has not taken yet is listed and can be tailed.
    func testTailOfAConsoleNotYetCommittedFindsIt() {
        let h = ConcentratorHarness()
        h.assignmentReply = { _ in .hold }
        let vm = h.bringUpVM()
        h.vm(vm, says: Array("unsaved".utf8))
        let tail = h.admin(AdminRequest(command: "tail", vm: "web01"))
        XCTAssertEqual(tail.response?.ok, true)
        XCTAssertEqual(tail.response?.vm?.saved, false)
        XCTAssertEqual(tail.rest, Array("unsaved".utf8))
    }
}
