import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import ServiceLifecycle
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import VSPCClient
import VSPCCore

/// What the HTTP listener serves, given by the daemon: each closure is called off the concentrator's event loop
/// and may hop onto it.
public struct HTTPServices: Sendable {
    /// The gauges for a scrape, read on the concentrator's loop.
    public var snapshot: @Sendable () async -> MetricsSnapshot
    /// True while the concentrator's event loop turns.
    public var healthy: @Sendable () async -> Bool
    /// Nil when ready; else why not yet (assignments not loaded, ports not all bound).
    public var notReady: @Sendable () async -> String?
    /// Whether the daemon knows this console (an assignment), for 404s.
    public var knows: @Sendable (ConsoleKey) async -> Bool
    /// A console's live log, or its last N bytes; nil when it has none (blocking: run on the listener's pool).
    public var consoleLog: (@Sendable (ConsoleKey, Int?) throws -> [UInt8]?)?
    /// The JSON API (`/api/v1`); nil: only its document is served.
    public var api: APIServices?
    /// The browser console (`/console/<token>`); nil: not served.
    var web: WebConsole?

    public init(snapshot: @escaping @Sendable () async -> MetricsSnapshot,
                healthy: @escaping @Sendable () async -> Bool,
                notReady: @escaping @Sendable () async -> String?,
                knows: @escaping @Sendable (ConsoleKey) async -> Bool,
                consoleLog: (@Sendable (ConsoleKey, Int?) throws -> [UInt8]?)?) {
        self.snapshot = snapshot
        self.healthy = healthy
        self.notReady = notReady
        self.knows = knows
        self.consoleLog = consoleLog
    }
}

/// `--http [host]:port`: one HTTP/1.1 listener on Hummingbird, on its own event loop and its own thread for disk
/// reads and rendering, so that neither slow clients nor big logs touch the consoles. It serves
/// `GET /console_log/<uuid>` (what OpenStack Nova's `serial_log_uri` fetches), `/metrics` (Prometheus),
/// `/healthz` and `/readyz`. Clients must be in `--http-allow`; connections are bounded in number, per address
/// and in time (`HTTPAdmission`).
public final class HTTPListener: Sendable {
    public let metrics: VSPCMetrics
    let services: HTTPServices
    let admission: HTTPAdmission
    let logger: Logger
    private struct State {
        var group: MultiThreadedEventLoopGroup?
        var pool: NIOThreadPool?
        var task: Task<Void, any Error>?
        var services: ServiceGroup?
    }
    private let state = NIOLockedValueBox(State())

    /// The largest `?bytes=` a request may ask for, and what a request without one gets at most.
    public static let maxLogBytes = 1 << 30

    public convenience init(metrics: VSPCMetrics, services: HTTPServices, allow: AddressAllowList, logger: Logger) {
        self.init(metrics: metrics, services: services, allow: allow, logger: logger, limits: .init())
    }

    init(metrics: VSPCMetrics, services: HTTPServices, allow: AddressAllowList, logger: Logger, limits: HTTPAdmission.Limits) {
        self.metrics = metrics
        self.services = services
        self.admission = HTTPAdmission(allow: allow, limits: limits, logger: logger)
        self.logger = logger
    }

    /// Binds `host:port` (port 0 picks a free one) and returns the bound port; a `ListenError` if it cannot.
    /// With `tls`, every connection is HTTPS (`--http-cert`, `--http-key`, `--http-client-ca`).
    public func start(host: String, port: Int, tls: NIOSSLContext? = nil) async throws -> Int {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        state.withLockedValue {
            $0.group = group
            $0.pool = pool
        }
        var bindHost = host
        if bindHost.hasPrefix("["), bindHost.hasSuffix("]") { bindHost = String(bindHost.dropFirst().dropLast()) }
        if bindHost.isEmpty { bindHost = "127.0.0.1" }

        let admission = self.admission
        let limits = admission.limits
        var decoder = HTTP1Channel.Configuration.DecoderConfiguration()
        decoder.maxHeaderFieldSize = limits.maxHeaderBytes
        decoder.maxHeaderListSize = limits.maxHeaderBytes
        decoder.maxHeaderFieldCount = 64
        let channelConfiguration = HTTP1Channel.Configuration(
            additionalChannelHandlers: [HTTPRequestMarks(maxBodyBytes: limits.maxBodyBytes), WebConsolePeerHeader(), APIRequestFacts()],
            idleTimeout: nil, httpDecoderConfiguration: decoder)
        // HTTP/1.1, and the browser console's WebSocket upgrade (`WebConsoleSocket`).
        let upgrade = HTTP1WebSocketUpgradeChannel.Configuration(http1: channelConfiguration, ws: WebConsoleSocket.configuration)
        let shouldUpgrade = WebConsoleSocket.shouldUpgrade(services.web)
        let server = HTTPServerBuilder { responder in
            AdmittedChannel(inner: APITLSChannel(inner: WebConsoleUpgradeChannel(inner: HTTP1WebSocketUpgradeChannel(
                responder: responder, configuration: upgrade, shouldUpgrade: shouldUpgrade)), tls: tls), admission: admission)
        }
        var quiet = logger
        quiet.logLevel = .critical
        let bound = BoundOnce()
        let app = Application(
            router: makeRouter(pool: pool),
            server: server,
            configuration: .init(address: .hostname(bindHost, port: port), serverName: nil, backlog: 64, reuseAddress: true),
            onServerRunning: { channel in bound.succeed(channel.localAddress?.port ?? port) },
            eventLoopGroupProvider: .shared(group),
            logger: quiet
        )
        // Run in a service group of its own, stopped by a graceful shutdown (never by cancelling: a connection
        // accepted but not yet served must still be served and closed in order).
        let services = ServiceGroup(configuration: .init(services: [app], logger: quiet))
        let task = Task {
            do {
                try await services.run()
                bound.fail(ServerError("the HTTP listener stopped"))
            } catch {
                bound.fail(error)
                throw error
            }
        }
        state.withLockedValue {
            $0.task = task
            $0.services = services
        }
        do {
            return try await bound.wait()
        } catch {
            await stop()
            throw ListenError("the HTTP port \(host):\(port)", error)
        }
    }

    /// Closes the listener and every connection. Safe to call twice.
    public func stop() async {
        let (task, services, group, pool) = state.withLockedValue { state in
            defer { state = State() }
            return (state.task, state.services, state.group, state.pool)
        }
        await services?.triggerGracefulShutdown()
        await admission.closeAll()
        _ = await task?.result
        try? await pool?.shutdownGracefully()
        try? await group?.shutdownGracefully()
    }

    /// Connections being served now.
    public var connectionCount: Int { admission.connectionCount }

    func makeRouter(pool: NIOThreadPool) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: GetOnlyMiddleware())
        let services = self.services
        let metrics = self.metrics
        // Every resource answers HEAD too (`GetOnlyMiddleware` drops the body).
        func get(_ path: RouterPath, _ handler: @escaping @Sendable (Request, BasicRequestContext) async throws -> Response) {
            router.get(path, use: handler)
            router.head(path, use: handler)
        }
        get("metrics") { _, _ -> Response in
            let snapshot = await services.snapshot()
            let text = try await pool.runIfActive { metrics.exposition(snapshot: snapshot) }
            return Self.response(.ok, contentType: "text/plain; version=0.0.4; charset=utf-8", bytes: text)
        }
        get("healthz") { _, _ -> Response in
            await services.healthy()
                ? Self.text(.ok, "ok\n") : Self.text(.serviceUnavailable, "the event loop did not answer\n")
        }
        get("readyz") { _, _ -> Response in
            if let why = await services.notReady() { return Self.text(.serviceUnavailable, why + "\n") }
            return Self.text(.ok, "ready\n")
        }
        get("console_log/:uuid") { request, context -> Response in
            try await Self.consoleLog(request, context, services: services, pool: pool)
        }
        APIRoutes.add(to: router, services: services.api, pool: pool)
        WebConsoleRoutes.add(to: router, services: services, pool: pool)
        return router
    }

    /// `GET /console_log/<uuid>[?bytes=N][&label=L]`: the console's live log (or its last N bytes), raw.
    static func consoleLog(_ request: Request, _ context: BasicRequestContext, services: HTTPServices,
                           pool: NIOThreadPool) async throws -> Response {
        guard let read = services.consoleLog else {
            return text(.notFound, "console logs are off (--console-log-dir off)\n")
        }
        guard let spelled = context.parameters.get("uuid")?.removingPercentEncoding,
            let uuid = UUIDSpelling.normalize(spelled)
        else {
            return text(.badRequest, "not a VM uuid; give 32 hex digits, with or without dashes\n")
        }
        let label = request.uri.queryParameters.get("label") ?? ""
        guard label.isEmpty || SerialPortLabel.isValid(label) else { return text(.badRequest, "not a serial-port label\n") }
        var limit: Int?
        if let bytes = request.uri.queryParameters.get("bytes") {
            guard let n = Int(bytes), n >= 0, n <= maxLogBytes else {
                return text(.badRequest, "bytes must be a whole number from 0 to \(maxLogBytes)\n")
            }
            limit = n
        }
        let key = ConsoleKey(uuid: uuid, label: label)
        let requested = limit
        let data = try await pool.runIfActive { try read(key, requested) }
        if let data { return response(.ok, contentType: "application/octet-stream", bytes: data) }
        guard await services.knows(key) else { return text(.notFound, "no console with that uuid\n") }
        return response(.ok, contentType: "application/octet-stream", bytes: [])
    }

    static func response(_ status: HTTPResponse.Status, contentType: String, bytes: [UInt8]) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        headers[.contentLength] = String(bytes.count)
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        response(status, contentType: "text/plain; charset=utf-8", bytes: Array(body.utf8))
    }
}

/// Every resource of the listener outside `/api/` and `/console/` is read-only: `HEAD` is answered as `GET`
/// without the body, and any other method gets 405 with `Allow: GET, HEAD`.
struct GetOnlyMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path.hasPrefix("/api/") || request.uri.path.hasPrefix("/console/") {
            return try await next(request, context)
        }
        switch request.method {
        case .get:
            return try await next(request, context)
        case .head:
            var response = try await next(request, context)
            let length = response.headers[.contentLength]
            response.body = ResponseBody()
            response.headers[.contentLength] = length
            return response
        default:
            var headers = HTTPFields()
            headers[.allow] = "GET, HEAD"
            headers[.contentType] = "text/plain; charset=utf-8"
            let text = "method not allowed\n"
            headers[.contentLength] = String(text.utf8.count)
            return Response(status: .methodNotAllowed, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }
}

/// The bound port once the server runs, or why it could not start: whichever comes first, once.
final class BoundOnce: Sendable {
    private let state = NIOLockedValueBox<(result: Result<Int, any Error>?, waiter: CheckedContinuation<Int, any Error>?)>((nil, nil))

    func succeed(_ port: Int) { finish(.success(port)) }
    func fail(_ error: any Error) { finish(.failure(error)) }

    private func finish(_ result: Result<Int, any Error>) {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Int, any Error>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    func wait() async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLockedValue { state -> Result<Int, any Error>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
