import Foundation
import Logging
import NIOCore
import NIOEmbedded
import VSPCCore
import XCTest
@testable import VSPCNet

/// An admin request made inside the daemon goes through the machine like any admin connection's, and its
/// answer comes back; the connection is closed and forgotten after it.
final class AdminAnswerTests: XCTestCase {
    func testAnAdminRequestInsideTheDaemonIsAnsweredByTheMachine() throws {
        let loop = EmbeddedEventLoop()
        var config = DaemonConfig()
        config.descriptorLimit = 1000
        let store = ConcentratorDriverTests.FakeStore()
        let driver = ConcentratorDriver(config: config, store: store,
                                        logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                                        loop: loop, metrics: VSPCMetrics(version: "test"))
        driver.handle(.start(assignments: [], scrollback: [:], descriptorBaseline: 8))
        let before = driver.read { $0.daemonStatus().descriptors }
        var request = AdminRequest(command: "token-create")
        request.tokenHash = String(repeating: "ab", count: 32)
        let answer = try driver.adminAnswer(request, peer: "api").wait()
        XCTAssertEqual(answer?.ok, true)
        XCTAssertEqual(answer?.token?.id, "abababababab")
        XCTAssertEqual(store.events.map(\.peer), ["api"])
        let unknown = try driver.adminAnswer(AdminRequest(command: "forget", vm: "nosuchvm"), peer: "api").wait()
        XCTAssertEqual(unknown?.ok, false)
        XCTAssertEqual(driver.read { $0.daemonStatus().descriptors }, before, "the connections are closed")
        driver.shutdown()
        try loop.syncShutdownGracefully()
    }
}
