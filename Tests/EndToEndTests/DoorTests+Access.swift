import Foundation
import VSPCSim
import VSPCCore
import VSPCStore
import XCTest

/// What people do through the SSH door that is recorded (BREAK, `list@`), and replaying a large scrollback.
extension DoorTests {
    // MARK: - 14.2 BREAK and list are recorded

    func testBreakAndListAreRecordedWithTheKey() async throws {
        let alice = try makeKey("ed25519", "alice@break")
        let door = try await startDoor([alice])
        let uuid = testUUID(21)
        _ = try await connectVM(door, uuid, "break-21")
        let session = try await attach(door, alice, "break-21")
        let fingerprint = try alice.fingerprint

        session.menu("b")
        let events = try await waitForEvents(door.daemon, uuid: uuid, "client-break") {
            $0.contains { $0.kind == "client-break" }
        }
        let breaks = events.filter { $0.kind == "client-break" }
        XCTAssertEqual(breaks.count, 1, describe(events))
        let detail = try XCTUnwrap(breaks.first?.detail)
        XCTAssertTrue(detail.hasPrefix("door=ssh "), detail)
        XCTAssertTrue(detail.contains("key=alice@break \(fingerprint)"), detail)
        XCTAssertTrue(session.isRunning)

        // `ssh list@host`: recorded with no VM, read from the event table.
        let listed = try runProgram("/usr/bin/ssh", sshArguments(door, alice, "list"))
        XCTAssertEqual(listed.status, 0, listed.err)
        XCTAssertTrue(listed.text.contains("break-21"), listed.text)
        var lists: [ConsoleEvent] = []
        try await waitUntil("a client-list event") {
            let all = (try? Store(path: door.daemon.dbPath, readOnly: true).events(uuid: nil)) ?? []
            lists = all.filter { $0.kind == "client-list" }
            return !lists.isEmpty
        }
        XCTAssertEqual(lists.count, 1)
        XCTAssertNil(lists.first?.uuid)
        let listDetail = try XCTUnwrap(lists.first?.detail)
        XCTAssertTrue(listDetail.hasPrefix("door=ssh key=alice@break \(fingerprint)"), listDetail)
        XCTAssertTrue(listDetail.hasSuffix("consoles=1"), listDetail)
        let logged = try await door.daemon.waitForLog("client-list ")
        XCTAssertTrue(logged.first?.contains("key=alice@break \(fingerprint)") == true, logged.description)
    }

    // MARK: - 14.3 replaying a 2 MiB scrollback

    func testReplayOfATwoMebibyteScrollbackArrivesWholeAndDropsNobody() async throws {
        let alice = try makeKey("ed25519", "alice@replay")
        let size = 2 << 20
        let door = try await startDoor([alice], extra: ["--scrollback", "\(size)"])
        let uuid = testUUID(22)
        let vm = try await connectVM(door, uuid, "replay-22")
        let session = try await attach(door, alice, "replay-22")

        // 2 MiB of numbered lines, seen live first.
        var printed: [UInt8] = []
        var n = 0
        while printed.count < size {
            printed += Array(String(format: "line %07d of the scrollback ...........................\r\n", n).utf8)
            n += 1
        }
        printed = Array(printed.prefix(size))
        vm.output(printed)
        try await session.waitForOutput("the 2 MiB live", timeout: 120) { $0.count >= size }
        try await session.waitForOutput("the last line live", timeout: 30) {
            String(decoding: $0.suffix(200), as: UTF8.self).hasSuffix(String(decoding: printed.suffix(60), as: UTF8.self))
        }

        let before = session.out.count
        session.menu("r")
        try await session.waitForOutput("the whole scrollback replayed", timeout: 180) { $0.count >= before + size }
        let last = String(decoding: printed.suffix(60), as: UTF8.self)
        try await session.waitForOutput("the scrollback's last line replayed", timeout: 30) {
            String(decoding: $0.dropFirst(before), as: UTF8.self).contains(last)
        }
        let replayed = String(decoding: session.out.dropFirst(before), as: UTF8.self)
        XCTAssertTrue(replayed.contains(String(decoding: printed.prefix(60), as: UTF8.self)), "the first line was not replayed")
        XCTAssertFalse(replayed.contains("skipped, you fell behind"), "the replay was skipped over")

        // Still attached, still live, nobody dropped.
        vm.output("after-the-replay\r\n")
        try await session.waitFor("after-the-replay\r\n")
        XCTAssertTrue(session.isRunning)
        let events = try await waitForEvents(door.daemon, uuid: uuid, "the history") { _ in true }
        XCTAssertFalse(events.contains { $0.kind == "client-dropped" || $0.kind == "client-skipped" }, describe(events))
    }
}
