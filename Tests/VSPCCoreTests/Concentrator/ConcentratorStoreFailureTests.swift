import XCTest
@testable import VSPCCore

/// A database that refuses writes never takes a console away (issue 8): consoles stay listed and served
/// unsaved, writes are retried with back-off, failures are logged at most once a minute, and a removal holds
/// its port until the delete commits.
final class ConcentratorStoreFailureTests: XCTestCase {
    private var keyA: ConsoleKey { ConsoleKey(uuid: UUIDs.a, label: "") }

    func testFailuresAreLoggedOnceAMinuteAndRecoveryOnce() {
        let h = ConcentratorHarness()
        var failing = true
        h.assignmentReply = { _ in failing ? .fail("disk full") : .commit }
        let vm = h.bringUpVM()
        var errorLines = h.take().logs.filter { $0.level == .error }.count
        // Retries at 1, 2, 4, 8, 16, 30, 30 s: still one line in the first minute.
        h.advance(by: 59)
        errorLines += h.take().logs.filter { $0.level == .error }.count
        XCTAssertEqual(errorLines, 1)
        XCTAssertEqual(h.remaining(.persistRetry(keyA)).map { $0 <= 30_000_000_000 }, true, "back-off is capped")
        h.advance(by: 31)
        XCTAssertEqual(h.take().logs.filter { $0.level == .error }.count, 1, "one more line after a minute")
        // The console is served all along.
        let person = h.connectClient(keyA)
        h.take()
        XCTAssertEqual(h.vm(vm, says: Array("up".utf8)), [.broadcast([person], Array("up".utf8))])
        XCTAssertEqual(h.list().map(\.saved), [false])
        failing = false
        h.advance(by: 30)
        let recovered = h.take()
        XCTAssertEqual(recovered.recordKinds, [.portAssigned])
        XCTAssertEqual(recovered.logs.filter { $0.level == .notice && $0.message.hasPrefix("the database takes writes again") }.count, 1)
        XCTAssertEqual(h.list().map(\.saved), [true])
    }

    func testAFailedDeleteIsRetriedAndItsPortIsNotGivenToAnotherVM() {
        let h = ConcentratorHarness()
        h.deletionReply = { _ in .fail("disk full") }
        let vm = h.bringUpVM()
        h.send(.vmClosed(vm))
        h.take()
        h.advance(by: 3600 + 60) // expired; the delete fails
        let expired = h.take()
        XCTAssertTrue(expired.recordKinds.contains(.portExpired))
        XCTAssertEqual(h.list(), [])
        XCTAssertTrue(h.isArmed(.deleteRetry(keyA)))
        // Another VM gets another port: 20000 is still the expired VM's on disk.
        h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        XCTAssertEqual(h.list().map(\.port), [20001])
        let freeWhileHeld = Int(h.status()["freePorts"]!)!
        // The delete goes through: the port returns to the pool.
        h.deletionReply = { _ in .commit }
        h.advance(by: 30)
        XCTAssertFalse(h.isArmed(.deleteRetry(keyA)))
        XCTAssertEqual(Int(h.status()["freePorts"]!)!, freeWhileHeld + 1)
    }

    func testAVMComingBackBeforeItsDeleteCommitsGetsItsPortBack() {
        let h = ConcentratorHarness()
        h.deletionReply = { _ in .hold }
        let vm = h.bringUpVM()
        h.send(.vmClosed(vm))
        h.advance(by: 3600 + 60)
        XCTAssertEqual(h.list(), [])
        h.take()
        h.bringUpVM(peer: "10.0.0.9:900")
        XCTAssertEqual(h.list().map(\.port), [20000], "the same port: the delete is abandoned")
        XCTAssertFalse(h.isArmed(.deleteRetry(keyA)))
    }
}

/// Issue 8: a busy console's scrollback writes grow with its output, not with its ring size.
final class ConcentratorScrollbackWriteTests: XCTestCase {
    func testScrollbackBytesWrittenFollowTheOutput() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        let line = Array(repeating: UInt8(ascii: "x"), count: 1023) + [0x0A]
        var printed = 0
        for _ in 0..<1024 { // 1 MiB, in 1 KiB lines, 8 lines between saves
            h.vm(vm, says: line)
            printed += line.count
            h.advance(by: 0.25)
        }
        h.advance(by: 2)
        let written = h.persists.reduce(0) { total, persist in
            total + persist.ops.reduce(0) { n, op in
                switch op {
                case .appendScrollback(_, _, let data, _, _), .saveScrollback(_, _, let data, _): return n + data.count
                default: return n
                }
            }
        }
        print("scrollback: \(written) bytes written for \(printed) bytes of console output (ring \(h.config.scrollbackBytes) bytes)")
        XCTAssertEqual(written, printed, "each byte printed is written once")
    }
}
