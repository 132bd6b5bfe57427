import NIOCore
import NIOEmbedded
import XCTest
@testable import VSPCNet

/// The metrics connection's deadlines on an EmbeddedEventLoop, whose time moves only when the test says
/// (issue 14 item 18: a half-sent request used to hold its connection for the 90 s idle timeout).
final class HTTPRequestClockTests: XCTestCase {
    private func open() throws -> (EmbeddedEventLoop, EmbeddedChannel, HTTPRequestClock) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let clock = HTTPRequestClock(requestTimeout: .seconds(5), idleTimeout: .seconds(90))
        try channel.pipeline.syncOperations.addHandler(clock)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (loop, channel, clock)
    }

    private func bytes(_ channel: EmbeddedChannel, _ text: String) throws {
        try channel.writeInbound(channel.allocator.buffer(string: text))
        _ = try channel.readInbound(as: ByteBuffer.self)
    }

    func testANewConnectionHasTheRequestTimeout() throws {
        let (loop, channel, _) = try open()
        loop.advanceTime(by: .milliseconds(4999))
        XCTAssertTrue(channel.isActive)
        loop.advanceTime(by: .milliseconds(1))
        XCTAssertFalse(channel.isActive, "nothing sent within 5 s")
    }

    func testAHalfSentRequestIsClosedAfterTheRequestTimeout() throws {
        let (loop, channel, _) = try open()
        try bytes(channel, "GET /metr")
        loop.advanceTime(by: .seconds(5))
        XCTAssertFalse(channel.isActive)
    }

    func testAKeptAliveConnectionMayIdleThenHasTheRequestTimeoutAgain() throws {
        let (loop, channel, clock) = try open()
        try bytes(channel, "GET /metrics HTTP/1.1\r\n\r\n")
        clock.requestReceived()
        loop.advanceTime(by: .seconds(100))
        XCTAssertTrue(channel.isActive, "no deadline while a request is answered")
        clock.responseSent()
        loop.advanceTime(by: .seconds(89))
        XCTAssertTrue(channel.isActive, "idle between scrapes for less than 90 s")
        try bytes(channel, "GET /")
        loop.advanceTime(by: .milliseconds(4999))
        XCTAssertTrue(channel.isActive)
        loop.advanceTime(by: .milliseconds(1))
        XCTAssertFalse(channel.isActive, "the next request began and did not finish within 5 s")
    }

    func testAnIdleKeptAliveConnectionIsClosed() throws {
        let (loop, channel, clock) = try open()
        try bytes(channel, "GET /metrics HTTP/1.1\r\n\r\n")
        clock.requestReceived()
        clock.responseSent()
        loop.advanceTime(by: .seconds(90))
        XCTAssertFalse(channel.isActive)
    }

    func testAPipelinedRequestGetsTheRequestTimeoutAfterTheResponse() throws {
        let (loop, channel, clock) = try open()
        try bytes(channel, "GET /metrics HTTP/1.1\r\n\r\n")
        clock.requestReceived()
        try bytes(channel, "GET /met")
        clock.responseSent()
        loop.advanceTime(by: .seconds(5))
        XCTAssertFalse(channel.isActive)
    }
}
