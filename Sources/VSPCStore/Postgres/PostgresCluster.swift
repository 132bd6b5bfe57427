import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import VSPCCore

/// The cluster's shared records in PostgreSQL (`ClusterRecords`): nodes and their heartbeats, who owns each
/// console (and at which epoch), pending vMotions; notifications on channel `vspc` (`ClusterNoticeText`) on a
/// connection of their own, made again when lost (then `.reconnected`: notices may have been missed).
public final class PostgresCluster: ClusterRecords, @unchecked Sendable {
    public let url: PostgresURL
    public let node: String
    let group: MultiThreadedEventLoopGroup
    /// For the migrations and the notifications' own connection.
    let link: PostgresLink
    /// For the statements: several at once (`lanes`), since the cluster agent runs its requests on several
    /// queues.
    let pool: PostgresLinkPool
    let logger: Logger
    private let quiet: Logger
    private let lock = NSLock()
    private var listeners: [@Sendable (ClusterNotice) -> Void] = []
    private var listening: PostgresConnection?
    private var listenStarted = false
    private var closed = false
    private var startedReported = false
    private let listenQueue = DispatchQueue(label: "vspcd.cluster.listen")

    /// Connects and applies the migrations (as `PostgresStore` does; whichever opens first migrates).
    public init(url: PostgresURL, node: String, lanes: Int = 4, logger: Logger = Logger(label: "vspcd.cluster")) throws {
        self.url = url
        self.node = node
        self.logger = logger
        var quiet = Logger(label: "vspcd.cluster.postgres")
        quiet.logLevel = .critical
        self.quiet = quiet
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        do {
            let link = try PostgresLink(url: url, group: group, logger: quiet)
            try link.run { conn in try PostgresMigrations.apply(link, conn) }
            self.link = link
            pool = PostgresLinkPool(try (0..<max(1, lanes)).map { _ in try PostgresLink(url: url, group: group, logger: quiet) })
        } catch {
            try? group.syncShutdownGracefully()
            throw StoreError.cannotOpen(path: url.redacted, reason: "\(error)")
        }
    }

    deinit {
        // On the group's own thread nothing may wait.
        if group.next().inEventLoop {
            group.shutdownGracefully(queue: .global()) { _ in }
        } else {
            close()
            try? group.syncShutdownGracefully()
        }
    }

    /// Stops listening and closes the connections.
    public func close() {
        lock.lock()
        closed = true
        let conn = listening
        listening = nil
        lock.unlock()
        if let conn { _ = try? link.wait(conn.close()) }
        link.close()
        pool.close()
    }

    private func q<T>(_ body: (Query) throws -> T) throws -> T {
        try pool.run { link, conn in try body(Query(link: link, conn: conn)) }
    }

    /// Runs statements on one connection (`q("...")`); a result may be left unused.
    struct Query {
        let link: PostgresLink
        let conn: PostgresConnection
        @discardableResult
        func callAsFunction(_ query: PostgresQuery) throws -> PostgresQueryResult { try link.query(conn, query) }
    }

    public func heartbeat(node: String, link address: String, consoles: Int, leaseTimeout: Double) throws -> [NodeStatus] {
        lock.lock()
        let first = !startedReported
        lock.unlock()
        let nodes = try q { q in
            if first {
                try q("""
                    INSERT INTO nodes (name, link, started_at, heartbeat_at, consoles) VALUES (\(node), \(address), now(), now(), \(consoles))
                    ON CONFLICT (name) DO UPDATE SET link = EXCLUDED.link, started_at = now(), heartbeat_at = now(),
                        consoles = EXCLUDED.consoles
                    """)
            } else {
                try q("""
                    INSERT INTO nodes (name, link, started_at, heartbeat_at, consoles) VALUES (\(node), \(address), now(), now(), \(consoles))
                    ON CONFLICT (name) DO UPDATE SET link = EXCLUDED.link, heartbeat_at = now(), consoles = EXCLUDED.consoles
                    """)
            }
            return try q("""
                SELECT name, link, started_at, heartbeat_at, consoles,
                       heartbeat_at > now() - make_interval(secs => \(leaseTimeout)) FROM nodes ORDER BY name
                """).map { row -> NodeStatus in
                let (name, link, started, beat, consoles, alive) = try row.decode((String, String, Date, Date, Int, Bool).self)
                return NodeStatus(name: name, link: link, startedAt: started, heartbeat: beat, consoles: consoles, alive: alive)
            }
        }
        if first {
            lock.lock()
            startedReported = true
            lock.unlock()
        }
        return nodes
    }

    public func claim(_ key: ConsoleKey, node: String) throws -> Owner {
        let payloadHead = "owner \(key.uuid) \(ClusterNoticeText.hex(Array(key.label.utf8))) \(node) "
        return try q { q in
            // One statement: the claim and its notification commit together.
            let rows = try q("""
                WITH claimed AS (
                    INSERT INTO ownership (uuid, label, node, epoch, claimed_at) VALUES (\(key.uuid), \(key.label), \(node), 1, now())
                    ON CONFLICT (uuid, label) DO UPDATE SET node = EXCLUDED.node, epoch = ownership.epoch + 1, claimed_at = now()
                    RETURNING epoch)
                SELECT epoch, pg_notify(\(ClusterNoticeText.channel), \(payloadHead) || epoch) FROM claimed
                """)
            guard let row = rows.first else {
                throw StoreFailure(.other, "PostgreSQL: the claim of \(key) returned no epoch")
            }
            let (epoch, _) = try row.decode((Int64, String).self)
            return Owner(node: node, epoch: epoch)
        }
    }

    public func owners() throws -> [ConsoleKey: Owner] {
        try q { q in
            var out: [ConsoleKey: Owner] = [:]
            for row in try q("SELECT uuid, label, node, epoch FROM ownership") {
                let (uuid, label, node, epoch) = try row.decode((String, String, String, Int64).self)
                out[ConsoleKey(uuid: uuid, label: label)] = Owner(node: node, epoch: epoch)
            }
            return out
        }
    }

    public func assignment(_ key: ConsoleKey) throws -> Assignment? {
        try q { q in
            try q("""
                SELECT uuid, label, name, port, created_at, last_seen FROM assignments
                WHERE uuid = \(key.uuid) AND label = \(key.label)
                """).first.map(PostgresStore.assignment)
        }
    }

    public func holds(_ key: ConsoleKey, _ owner: Owner) throws -> Bool {
        try q { q in
            try q("""
                SELECT 1 FROM ownership WHERE uuid = \(key.uuid) AND label = \(key.label)
                AND node = \(owner.node) AND epoch = \(owner.epoch)
                """).first != nil
        }
    }

    public func publish(_ v: SharedVMotion) throws {
        guard let payload = ClusterNoticeText.format(.vmotion(sequence: v.sequence)) else { return }
        _ = try q { q in
            try q("""
                WITH published AS (
                    INSERT INTO vmotions (sequence, secret, uuid, label, name, port, source_node, source_peer, begun_at,
                                          source_epoch)
                    VALUES (\(Data(v.sequence)), \(Data(v.secret)), \(v.key.uuid), \(v.key.label), \(v.name), \(v.port),
                            \(v.sourceNode), \(v.sourcePeer), \(v.begunAt.timeIntervalSince1970),
                            (SELECT epoch FROM ownership WHERE uuid = \(v.key.uuid) AND label = \(v.key.label)
                             AND node = \(v.sourceNode)))
                    ON CONFLICT (sequence) DO UPDATE SET secret = EXCLUDED.secret, uuid = EXCLUDED.uuid,
                        label = EXCLUDED.label, name = EXCLUDED.name, port = EXCLUDED.port,
                        source_node = EXCLUDED.source_node, source_peer = EXCLUDED.source_peer, begun_at = EXCLUDED.begun_at,
                        source_epoch = EXCLUDED.source_epoch
                    RETURNING 1)
                SELECT pg_notify(\(ClusterNoticeText.channel), \(payload)) FROM published
                """)
        }
    }

    public func findVMotion(cookie: [UInt8], secretLength: Int) throws -> SharedVMotion? {
        guard secretLength >= 0, cookie.count > secretLength else { return nil }
        let sequence = Array(cookie.prefix(cookie.count - secretLength))
        let secret = Array(cookie.suffix(secretLength))
        let found = try q { q in
            try q("""
                SELECT secret, uuid, label, name, port, source_node, source_peer, begun_at, source_epoch FROM vmotions
                WHERE sequence = \(Data(sequence))
                """).first.map { row -> SharedVMotion in
                let (stored, uuid, label, name, port, source, peer, begun, epoch) =
                    try row.decode((Data, String, String, String, Int, String, String, Double, Int64?).self)
                return SharedVMotion(key: ConsoleKey(uuid: uuid, label: label), name: name, port: port, sequence: sequence,
                                     secret: [UInt8](stored), sourceNode: source, sourcePeer: peer,
                                     begunAt: Date(timeIntervalSince1970: begun), sourceEpoch: epoch)
            }
        }
        guard let found, Self.constantTimeEqual(found.secret, secret) else { return nil }
        return found
    }

    /// Equal bytes, compared in a time that depends only on the lengths.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    public func withdrawVMotion(_ key: ConsoleKey, sequence: [UInt8]) throws {
        _ = try q { q in
            try q("DELETE FROM vmotions WHERE sequence = \(Data(sequence)) AND uuid = \(key.uuid) AND label = \(key.label)")
        }
    }

    // MARK: Notifications

    public func listen(_ body: @escaping @Sendable (ClusterNotice) -> Void) throws {
        lock.lock()
        listeners.append(body)
        let start = !listenStarted
        listenStarted = true
        lock.unlock()
        guard start else { return }
        do {
            try connectListener()
        } catch {
            logger.warning("cluster: cannot listen for notifications yet (\(PostgresErrors.failure(error, url: url).message)); retrying")
            listenQueue.asyncAfter(deadline: .now() + 0.5) { self.reconnectListener(delay: 0.5) }
        }
    }

    private func connectListener() throws {
        let conn = try link.connect(id: 1)
        conn.addListener(channel: ClusterNoticeText.channel) { [weak self] _, note in
            guard let self, let notice = ClusterNoticeText.parse(note.payload) else { return }
            self.deliver(notice)
        }
        do {
            _ = try link.wait(conn.query("LISTEN \(unescaped: ClusterNoticeText.channel)", logger: quiet))
        } catch {
            _ = try? link.wait(conn.close())
            throw error
        }
        lock.lock()
        if closed {
            lock.unlock()
            _ = try? link.wait(conn.close())
            return
        }
        listening = conn
        lock.unlock()
        conn.closeFuture.whenComplete { [weak self] _ in
            guard let self else { return }
            self.listenQueue.async { self.reconnectListener(delay: 0.5) }
        }
    }

    /// The listening connection was lost: make it again (0.5 s .. 5 s apart), then say notices may be missed.
    private func reconnectListener(delay: Double) {
        lock.lock()
        let stop = closed
        listening = nil
        lock.unlock()
        if stop { return }
        do {
            try connectListener()
            logger.notice("cluster: listening for notifications again")
            deliver(.reconnected)
        } catch {
            let next = min(delay * 2, 5)
            listenQueue.asyncAfter(deadline: .now() + delay) { self.reconnectListener(delay: next) }
        }
    }

    private func deliver(_ notice: ClusterNotice) {
        lock.lock()
        let bodies = listeners
        lock.unlock()
        for body in bodies { body(notice) }
    }
}
