import Foundation
import NIOCore
import NIOPosix

/// Talks to a daemon's admin endpoint: sends one request, decodes the response line, and hands any raw bytes
/// that follow (for `tail`) to `onData`.
public enum AdminClient {
    public struct ConnectError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Parses `host:port`, `:port`, `port` or `[v6]:port`.
    public static func parseEndpoint(_ text: String, defaultHost: String) -> (host: String, port: Int)? {
        var host = defaultHost
        var portText = text
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = String(rest.dropFirst())
        } else if let colon = text.lastIndex(of: ":") {
            let h = String(text[..<colon])
            if !h.isEmpty { host = h }
            portText = String(text[text.index(after: colon)...])
        }
        guard let port = Int(portText), (0...65535).contains(port) else { return nil }
        return (host, port)
    }

    public static func request(host: String, port: Int, _ request: AdminRequest,
                               onHeader: (@Sendable (AdminResponse) -> Void)? = nil,
                               onData: (@Sendable ([UInt8]) -> Void)? = nil) async throws -> AdminResponse {
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: AdminResponse.self)
        let done = group.next().makePromise(of: Void.self)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.pipeline.addHandler(AdminClientHandler(response: promise, done: done, onHeader: onHeader, onData: onData))
            }
        let channel: Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            let failure = ConnectError(description: "cannot reach vspcd's admin endpoint at \(host):\(port) (\(error)); is the daemon running? (see --admin)")
            promise.fail(failure)
            done.succeed(())
            throw failure
        }
        var line = try JSONEncoder().encode(request)
        line.append(0x0A)
        try await channel.writeAndFlush(ByteBuffer(bytes: line))
        let response = try await promise.futureResult.get()
        if onData != nil, response.ok {
            try await done.futureResult.get()
        } else {
            try? await channel.close()
        }
        return response
    }
}

final class AdminClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let response: EventLoopPromise<AdminResponse>
    let done: EventLoopPromise<Void>
    let onHeader: (@Sendable (AdminResponse) -> Void)?
    let onData: (@Sendable ([UInt8]) -> Void)?
    var header: [UInt8] = []
    var gotHeader = false

    init(response: EventLoopPromise<AdminResponse>, done: EventLoopPromise<Void>,
         onHeader: (@Sendable (AdminResponse) -> Void)?, onData: (@Sendable ([UInt8]) -> Void)?) {
        self.response = response
        self.done = done
        self.onHeader = onHeader
        self.onData = onData
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        var bytes = Array(buffer.readableBytesView)
        if !gotHeader {
            if let newline = bytes.firstIndex(of: 0x0A) {
                header += bytes[..<newline]
                bytes = Array(bytes[(newline + 1)...])
                gotHeader = true
                do {
                    let decoded = try JSONDecoder().decode(AdminResponse.self, from: Data(header))
                    onHeader?(decoded)
                    response.succeed(decoded)
                } catch {
                    response.fail(AdminClient.ConnectError(description: "the admin endpoint sent a malformed response: \(error)"))
                    context.close(promise: nil)
                    return
                }
            } else {
                header += bytes
                if header.count > 64 << 20 {
                    response.fail(AdminClient.ConnectError(description: "the admin endpoint's response is too long"))
                    context.close(promise: nil)
                }
                return
            }
        }
        if !bytes.isEmpty { onData?(bytes) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !gotHeader {
            response.fail(AdminClient.ConnectError(description: "the admin endpoint closed the connection without answering"))
        }
        done.succeed(())
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
