import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import VSPCCore

/// One connection to the database, made when first needed and made again after it is lost, used by one caller
/// at a time. Every call blocks its (non event loop) thread, at most `timeout` seconds per statement.
final class PostgresLink: @unchecked Sendable {
    let url: PostgresURL
    let group: any EventLoopGroup
    let logger: Logger
    /// How long one statement may take before the connection is given up as lost.
    let timeout: Double
    private let configuration: PostgresConnection.Configuration
    private let lock = NSLock()
    private var connection: PostgresConnection?
    private static let ids = NSLock()
    nonisolated(unsafe) private static var nextID = 1

    init(url: PostgresURL, group: any EventLoopGroup, logger: Logger, timeout: Double = 30) throws {
        self.url = url
        self.group = group
        self.logger = logger
        self.timeout = timeout
        self.configuration = try url.configuration()
    }

    /// Runs `body` with the connection (connecting first if needed). A lost connection is dropped, and the
    /// error is a `StoreFailure(.unreachable)`; a server's refusal is a `StoreFailure` of its kind.
    func run<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        let conn: PostgresConnection
        if let existing = connection, !existing.isClosed {
            conn = existing
        } else {
            connection = nil
            conn = try connect()
            connection = conn
        }
        do {
            return try body(conn)
        } catch {
            let failure = PostgresErrors.failure(error, url: url)
            if failure.kind == .unreachable {
                connection = nil
                _ = try? wait(conn.close())
            }
            throw failure
        }
    }

    /// A new connection of its own (not the link's), waited for at most `timeout` seconds.
    func connect(id: Int? = nil) throws -> PostgresConnection {
        let connecting = PostgresConnection.connect(on: group.next(), configuration: configuration,
                                                    id: id ?? Self.makeID(), logger: logger)
        do {
            return try wait(connecting)
        } catch {
            // Given up on (the wait timed out): a connection that still comes is closed, never dropped open
            // (PostgresNIO traps on a connection deinitialised before it was closed).
            connecting.whenSuccess { late in let _: EventLoopFuture<Void> = late.close() }
            throw error
        }
    }

    /// Runs one statement on `conn` and collects its rows.
    @discardableResult
    func query(_ conn: PostgresConnection, _ query: PostgresQuery) throws -> PostgresQueryResult {
        try wait(conn.query(query, logger: logger))
    }

    func close() {
        lock.lock()
        let conn = connection
        connection = nil
        lock.unlock()
        if let conn { try? wait(conn.close()) }
    }

    /// Closes the connection without waiting (on the group's own thread, where nothing may wait).
    func closeAsync() {
        lock.lock()
        let conn = connection
        connection = nil
        lock.unlock()
        if let conn { let _: EventLoopFuture<Void> = conn.close() }
    }

    /// Waits for a future from a thread that is not an event loop's, at most `timeout` seconds.
    func wait<T>(_ future: EventLoopFuture<T>) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        future.whenComplete { result in
            box.result = result
            done.signal()
        }
        guard done.wait(timeout: .now() + timeout) == .success, let result = box.result else {
            throw StoreFailure(.unreachable, "the database at \(url.redacted) did not answer within \(Int(timeout)) s")
        }
        do {
            return try result.get()
        } catch {
            throw PostgresErrors.failure(error, url: url)
        }
    }

    private static func makeID() -> Int {
        ids.lock()
        defer { ids.unlock() }
        nextID += 1
        return nextID
    }
}

/// Several links to one database, for callers on several threads: `run` takes a link no one is using (waiting
/// while all are busy). Each link connects when first needed, so idle lanes hold no connection.
final class PostgresLinkPool: @unchecked Sendable {
    private let links: [PostgresLink]
    private let lock = NSLock()
    private var free: [Int]
    private let available: DispatchSemaphore

    init(_ links: [PostgresLink]) {
        precondition(!links.isEmpty)
        self.links = links
        free = Array(links.indices.reversed())
        available = DispatchSemaphore(value: links.count)
    }

    func run<T>(_ body: (PostgresLink, PostgresConnection) throws -> T) throws -> T {
        available.wait()
        lock.lock()
        let index = free.removeLast()
        lock.unlock()
        defer {
            lock.lock()
            free.append(index)
            lock.unlock()
            available.signal()
        }
        let link = links[index]
        return try link.run { conn in try body(link, conn) }
    }

    func close() {
        for link in links { link.close() }
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}

/// What a PostgreSQL error means for the core (`StoreFailure`), in words that never hold the password.
enum PostgresErrors {
    static func failure(_ error: any Error, url: PostgresURL) -> StoreFailure {
        if let failure = error as? StoreFailure { return failure }
        if let error = error as? PSQLError {
            if error.code == .server {
                let state = error.serverInfo?[.sqlState] ?? ""
                let message = error.serverInfo?[.message] ?? "error"
                let detail = error.serverInfo?[.detail].map { " (\($0))" } ?? ""
                let text = "PostgreSQL: \(message)\(detail) [SQLSTATE \(state)]"
                if state.hasPrefix("08") || ["57P01", "57P02", "57P03", "53300"].contains(state) {
                    return StoreFailure(.unreachable, "the database at \(url.redacted) is unreachable: \(text)")
                }
                if state == "23505" { return StoreFailure(.conflict, text) }
                if state == "53100" { return StoreFailure(.diskFull, text) }
                if state == "25006" { return StoreFailure(.readOnly, text) }
                if state == "40001" || state == "40P01" || state == "55P03" { return StoreFailure(.busy, text) }
                return StoreFailure(.other, text)
            }
            let underlying = error.underlying.map { ": \($0)" } ?? ""
            return StoreFailure(.unreachable, "the database at \(url.redacted) is unreachable (\(error.code))\(underlying)")
        }
        if error is PostgresDecodingError {
            return StoreFailure(.other, "PostgreSQL: a value could not be read: \(error)")
        }
        if error is StoreError || error is RecordCopy.Refused || error is PostgresURL.Invalid {
            return StoreFailure(.other, "\(error)")
        }
        // Anything from the network below the protocol: refused, reset, timed out.
        return StoreFailure(.unreachable, "the database at \(url.redacted) is unreachable: \(PostgresURL.redact("\(error)"))")
    }
}
