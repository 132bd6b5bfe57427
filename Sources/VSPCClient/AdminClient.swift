import Foundation
import NIOCore
import NIOPosix
import VSPCCore

/// Why a request to the daemon's admin endpoint did not get an answer. Callers branch on the case: `vspc tail`
/// falls back to the database only when the daemon is unreachable.
public enum AdminClientError: Error, Equatable, CustomStringConvertible {
    /// Nothing answers at the endpoint: the daemon is down, or elsewhere. `reason` is a plain clause that says
    /// what to do (`SocketErrorText`); `detail` is the raw error, for `--debug`.
    case unreachable(endpoint: String, reason: String, detail: String)
    /// The daemon accepted the connection and closed it without an answer.
    case closedWithoutAnswer
    case malformedResponse(String)
    case responseTooLong

    public var description: String {
        switch self {
        case let .unreachable(endpoint, reason, _):
            return "cannot reach vspcd's admin endpoint at \(endpoint): \(reason)"
        case .closedWithoutAnswer: return "the admin endpoint closed the connection without answering"
        case .malformedResponse(let why): return "the admin endpoint sent a malformed response: \(why)"
        case .responseTooLong: return "the admin endpoint's response is too long"
        }
    }
}

/// Talks to a daemon's admin endpoint: sends one request, decodes the response line, and hands any raw bytes
/// that follow (for `tail`) to `onData`.
public enum AdminClient {
    public static func request(host: String, port: Int, _ request: AdminRequest,
                               onHeader: (@Sendable (AdminResponse) -> Void)? = nil,
                               onData: (@Sendable ([UInt8]) -> Void)? = nil) async throws -> AdminResponse {
        try await self.request(.tcp(Endpoint(host: host, port: port)), request, onHeader: onHeader, onData: onData)
    }

    /// The same, over TCP or a Unix socket (`--admin unix:PATH`).
    public static func request(_ endpoint: AdminEndpoint, _ request: AdminRequest,
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
            switch endpoint {
            case .tcp(let e): channel = try await bootstrap.connect(host: e.host, port: e.port).get()
            case .unix(let path): channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
        } catch {
            let failure = AdminClientError.unreachable(endpoint: endpoint.description,
                                                       reason: SocketErrorText.connectReason(error, option: "--admin"),
                                                       detail: "\(error)")
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

    static let maxResponseBytes = 64 << 20

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
            guard let newline = bytes.firstIndex(of: 0x0A) else {
                header += bytes
                if header.count > Self.maxResponseBytes {
                    gotHeader = true
                    response.fail(AdminClientError.responseTooLong)
                    context.close(promise: nil)
                }
                return
            }
            header += bytes[..<newline]
            bytes = Array(bytes[(newline + 1)...])
            gotHeader = true
            do {
                let decoded = try JSONDecoder().decode(AdminResponse.self, from: Data(header))
                onHeader?(decoded)
                response.succeed(decoded)
            } catch {
                response.fail(AdminClientError.malformedResponse("\(error)"))
                context.close(promise: nil)
                return
            }
        }
        if !bytes.isEmpty { onData?(bytes) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !gotHeader { response.fail(AdminClientError.closedWithoutAnswer) }
        done.succeed(())
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
