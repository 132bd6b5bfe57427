import NIOCore
import NIOEmbedded
import XCTest
@testable import VSPCNet

/// The browser's sink: what waits for a browser is bounded; past the bound the machine is told once (from a
/// fresh turn of the loop), and a hard close closes the connection at once.
final class WebSocketSinkTests: XCTestCase {
    final class Count: @unchecked Sendable { var value = 0 }

    func testABrowserPastItsBoundIsReportedOnceAndAHardCloseClosesItsConnection() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let sink = WebSocketSink(limit: 100, channel: channel)
        let reports = Count()
        sink.attach(id: 7, loop: loop) { reports.value += 1 }

        sink.write(ByteBuffer(repeating: 0x41, count: 60))
        sink.notice("connected to web01 (up)")
        loop.run()
        XCTAssertEqual(reports.value, 0, "83 bytes wait: within the bound")
        sink.write(ByteBuffer(repeating: 0x42, count: 60))
        XCTAssertEqual(reports.value, 0, "never reported from inside the write")
        loop.run()
        XCTAssertEqual(reports.value, 1)
        sink.write(ByteBuffer(repeating: 0x43, count: 60))
        loop.run()
        XCTAssertEqual(reports.value, 1, "reported once")

        XCTAssertTrue(channel.isActive)
        sink.close(flush: false)
        loop.run()
        XCTAssertFalse(channel.isActive)
        // Nothing more is queued once closed.
        sink.write(ByteBuffer(repeating: 0x44, count: 600))
        loop.run()
        XCTAssertEqual(reports.value, 1)
    }
}
