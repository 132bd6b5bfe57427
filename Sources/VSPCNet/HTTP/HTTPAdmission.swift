import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import VSPCCore

/// Who may open a connection to the HTTP listener: `--http-allow`, and bounds on the connections served at once,
/// in all and per address (an IPv6 /64). A refused connection gets a one-line answer (403 or 503) and is closed;
/// its bytes never reach the router.
final class HTTPAdmission: Sendable {
    struct Limits: Sendable {
        var maxConnections = 64
        var maxConnectionsPerSource = 8
        /// A request must arrive whole this long after the connection opened or after its first byte.
        var requestTimeout: TimeAmount = .seconds(5)
        /// A kept-alive connection is closed this long after its last response when no new request has begun.
        var idleTimeout: TimeAmount = .seconds(90)
        var maxHeaderBytes = 16 * 1024
        /// A request body past this closes the connection (the listener's requests carry small JSON at most).
        var maxBodyBytes = 16 * 1024
    }

    private struct State {
        var connections: [ObjectIdentifier: any Channel] = [:]
        var bySource: [SourceKey: Int] = [:]
        var refusedLog = AddressLogLimiter()
    }

    let allow: AddressAllowList
    let limits: Limits
    let logger: Logger
    private let state = NIOLockedValueBox(State())

    init(allow: AddressAllowList, limits: Limits, logger: Logger) {
        self.allow = allow
        self.limits = limits
        self.logger = logger
    }

    enum Decision { case admitted, forbidden, busy }

    /// Admits a new connection (counted until it closes) or says why not.
    func admit(_ channel: any Channel) -> Decision {
        let address = channel.remoteAddress?.ipAddress.flatMap(IPAddress.init)
        guard allow.allows(address) else {
            let peer = PeerAddress.describe(channel.remoteAddress)
            let now = Int64(clamping: NIODeadline.now().uptimeNanoseconds)
            let note = state.withLockedValue { $0.refusedLog.refusal(from: address, now: now) }
            if note.log {
                let more = note.suppressedBefore > 0 ? " (and \(note.suppressedBefore) more in the last minute)" : ""
                logger.notice("refused HTTP connection from \(peer): not in --http-allow\(more)")
            }
            return .forbidden
        }
        let id = ObjectIdentifier(channel)
        let source = SourceKey(address)
        let admitted = state.withLockedValue { state -> Bool in
            guard state.connections.count < limits.maxConnections,
                state.bySource[source, default: 0] < limits.maxConnectionsPerSource
            else { return false }
            state.connections[id] = channel
            state.bySource[source, default: 0] += 1
            return true
        }
        guard admitted else { return .busy }
        channel.closeFuture.whenComplete { [state] _ in
            state.withLockedValue {
                guard $0.connections.removeValue(forKey: id) != nil else { return }
                let left = ($0.bySource[source] ?? 1) - 1
                $0.bySource[source] = left > 0 ? left : nil
            }
        }
        return .admitted
    }

    /// Connections being served now.
    var connectionCount: Int { state.withLockedValue { $0.connections.count } }

    /// Closes every connection (at stop).
    func closeAll() async {
        let channels = state.withLockedValue { Array($0.connections.values) }
        for channel in channels { try? await channel.close() }
    }
}

/// An HTTP/1.1 child channel behind `HTTPAdmission`: a refused connection is answered by `HTTPRefuseHandler`
/// and never reaches `inner`'s handlers; an admitted one gets the request clock (slow or idle connections are
/// closed) and then `inner`'s pipeline.
struct AdmittedChannel<Inner: ServerChildChannel>: ServerChildChannel {
    typealias Value = Inner.Value
    let inner: Inner
    let admission: HTTPAdmission

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let decision = admission.admit(channel)
        let limits = admission.limits
        do {
            switch decision {
            case .admitted:
                let clock = HTTPRequestClock(requestTimeout: limits.requestTimeout, idleTimeout: limits.idleTimeout)
                try channel.pipeline.syncOperations.addHandler(clock, position: .first)
            case .forbidden:
                try channel.pipeline.syncOperations.addHandler(HTTPRefuseHandler(.forbidden), position: .first)
            case .busy:
                try channel.pipeline.syncOperations.addHandler(HTTPRefuseHandler(.busy), position: .first)
            }
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        // HTTP/1.0 without keep-alive is closed once answered by the WebSocket upgrade's channel (`HTTP1KeepAlive`),
        // which takes its handler away when a WebSocket takes the connection over.
        return inner.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}
