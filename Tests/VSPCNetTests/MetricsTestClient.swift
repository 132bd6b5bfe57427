import Foundation
import NIOCore
import NIOPosix
@testable import VSPCNet

/// A plain TCP client for the metrics tests: sends raw bytes, collects what comes back until the server closes
/// or `until` is satisfied. A generous deadline turns a hang into a failure; nothing asserts on time.
enum RawTCP {
    struct Deadline: Error {}

    static func exchange(
        group: EventLoopGroup,
        port: Int,
        send: [UInt8],
        until: @escaping @Sendable ([UInt8]) -> Bool = { _ in false }
    ) async throws -> [UInt8] {
        let (channel, collector) = try await open(group: group, port: port, until: until)
        if !send.isEmpty {
            // The server may answer and close before reading (a refused connection): what it sent still counts.
            try? await channel.writeAndFlush(channel.allocator.buffer(bytes: send))
        }
        let bytes = try await collector.result.get()
        try? await channel.close()
        return bytes
    }

    /// An open connection and the collector of its bytes; for tests that hold connections.
    static func open(
        group: EventLoopGroup,
        port: Int,
        until: @escaping @Sendable ([UInt8]) -> Bool = { _ in false }
    ) async throws -> (Channel, Collector) {
        let loop = group.next()
        let collector = Collector(loop: loop, until: until)
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return (channel, collector)
    }

    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        private let promise: EventLoopPromise<[UInt8]>
        var result: EventLoopFuture<[UInt8]> { promise.futureResult }
        private let until: @Sendable ([UInt8]) -> Bool
        private var bytes: [UInt8] = []
        private var done = false
        private var timer: Scheduled<Void>?

        init(loop: EventLoop, until: @escaping @Sendable ([UInt8]) -> Bool) {
            self.promise = loop.makePromise()
            self.until = until
        }

        func handlerAdded(context: ChannelHandlerContext) {
            timer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(60)) { [self] in
                self.finish(failure: Deadline())
            }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            bytes += buffer.readBytes(length: buffer.readableBytes) ?? []
            if until(bytes) { finish() }
        }

        func channelInactive(context: ChannelHandlerContext) { finish() }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            finish()
            context.close(promise: nil)
        }

        private func finish(failure: Error? = nil) {
            guard !done else { return }
            done = true
            timer?.cancel()
            if let failure { promise.fail(failure) } else { promise.succeed(bytes) }
        }
    }
}

/// One parsed HTTP/1.1 response.
struct HTTPResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// Parses every complete response in `bytes` (Content-Length framed; `bodyless` for HEAD responses).
    static func parseAll(_ bytes: [UInt8], bodyless: Bool = false) -> [HTTPResponse] {
        var out: [HTTPResponse] = []
        var rest = bytes[...]
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        while let end = rest.firstRange(of: separator) {
            let headText = String(decoding: rest[rest.startIndex..<end.lowerBound], as: UTF8.self)
            var lines = headText.components(separatedBy: "\r\n")
            let statusLine = lines.removeFirst().split(separator: " ")
            guard statusLine.count >= 2, let status = Int(statusLine[1]) else { break }
            let headers = lines.compactMap { line -> (String, String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            }
            var response = HTTPResponse(status: status, headers: headers, body: [])
            let length = bodyless ? 0 : Int(response.header("Content-Length") ?? "0") ?? 0
            let bodyStart = end.upperBound
            guard rest.endIndex - bodyStart >= length else { break }
            response.body = Array(rest[bodyStart..<(bodyStart + length)])
            out.append(response)
            rest = rest[(bodyStart + length)...]
        }
        return out
    }

    /// True once `count` complete responses are in `bytes`.
    static func complete(_ count: Int, bodyless: Bool = false) -> @Sendable ([UInt8]) -> Bool {
        { parseAll($0, bodyless: bodyless).count >= count }
    }
}

/// A snapshot the test changes between scrapes; counts how often the server asked for it.
final class SnapshotBox: @unchecked Sendable {
    private let lock = NSLock()
    private var current: MetricsSnapshot
    private var reads = 0

    init(_ value: MetricsSnapshot) { current = value }

    func set(_ value: MetricsSnapshot) { lock.withLock { current = value } }
    func read() -> MetricsSnapshot { lock.withLock { reads += 1; return current } }
    var calls: Int { lock.withLock { reads } }
}
