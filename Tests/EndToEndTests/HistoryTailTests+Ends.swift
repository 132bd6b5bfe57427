import Foundation
import VSPCSim
import XCTest

/// Issue 15 item 6: `vspc tail -f` says why its stream ended, and exits non-zero when the daemon went away.
extension HistoryTailTests {
    private func waitForExit(_ follower: Follower) async throws -> Int32 {
        let deadline = Date().addingTimeInterval(30)
        while follower.isRunning {
            if Date() > deadline { throw SimError("tail -f still running; stderr: \(follower.errorText)") }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        // The reader threads may still be draining stderr.
        try await Task.sleep(nanoseconds: 100_000_000)
        return follower.process.terminationStatus
    }

    func testTailFollowSaysWhyItEnded() async throws {
        let d = try await startDaemon()
        let uuid = testUUID(611)
        let (vm, client) = try await connectVM(d, uuid: uuid, name: "ends")
        defer { vm.close(); client.close() }
        try await output(vm, Array("x\r\n".utf8), seenBy: client)

        // The console is forgotten: said so, and that is a normal end.
        let forgotten = try Follower(["tail", "-f", uuid] + admin(d))
        defer { forgotten.stop() }
        try await forgotten.waitFor(count: 3)
        XCTAssertEqual(try vspc(["forget", "ends", "--force"] + admin(d)).status, 0)
        let forgottenStatus = try await waitForExit(forgotten)
        XCTAssertEqual(forgottenStatus, 0, forgotten.errorText)
        XCTAssertEqual(forgotten.errorText, "vspc: ends was forgotten; nothing more to follow\n")

        // The daemon stops: said so, exit status 1.
        let vm2 = try await SimulatedVM.connect(port: d.proxyPort, uuid: testUUID(612), name: "stays")
        defer { vm2.close() }
        let stopped = try Follower(["tail", "-f", "stays"] + admin(d))
        defer { stopped.stop() }
        try await d.waitForList("the follower") { $0.first { $0.name == "stays" }?.clients == 1 }
        try await d.stop()
        let stoppedStatus = try await waitForExit(stopped)
        XCTAssertEqual(stoppedStatus, 1, stopped.errorText)
        XCTAssertEqual(stopped.errorText, "vspc: vspcd went away (stopped, restarted or killed); the stream of stays ended\n")
    }
}
