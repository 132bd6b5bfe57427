import Foundation
import VSPCSim
import XCTest

/// PostgreSQL for the tests of several daemons. The server comes from env `VSPC_TEST_POSTGRES_URL`
/// (`postgresql://USER@127.0.0.1:PORT/postgres`; `.ci/run` starts one and sets it); each test gets a fresh database
/// of its own on it. Without it the tests skip with one line naming Debian's package; under CI (env `CI`) they fail.
enum PostgresFixture {
    static let environment = ProcessInfo.processInfo.environment

    /// The server's URL, or a skip (a failure under CI).
    static func serverURL(_ what: String) throws -> String {
        if let url = environment["VSPC_TEST_POSTGRES_URL"], !url.isEmpty { return url }
        throw unavailable("\(what): set VSPC_TEST_POSTGRES_URL to a PostgreSQL server (install Debian's postgresql; .ci/run starts one)")
    }

    /// A skip with `message`, to throw; under CI the test fails as well.
    static func unavailable(_ message: String) -> Error {
        if environment["CI"] != nil { XCTFail(message) }
        return XCTSkip(message)
    }

    /// The folder of PostgreSQL's programs (initdb, pg_ctl, psql): `VSPC_TEST_PG_BIN`, else the newest
    /// /usr/lib/postgresql/N/bin.
    static func binDirectory(_ what: String) throws -> String {
        if let bin = environment["VSPC_TEST_PG_BIN"], !bin.isEmpty { return bin }
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap(Int.init).sorted()
        for version in versions.reversed() {
            let bin = "\(root)/\(version)/bin"
            if FileManager.default.isExecutableFile(atPath: "\(bin)/initdb") { return bin }
        }
        throw unavailable("\(what): PostgreSQL's programs are missing (install Debian's postgresql, or set VSPC_TEST_PG_BIN)")
    }

    /// `psql` beside the server's programs when there is one, else the client's.
    static var psql: String {
        if let bin = environment["VSPC_TEST_PG_BIN"], FileManager.default.isExecutableFile(atPath: "\(bin)/psql") {
            return "\(bin)/psql"
        }
        return "/usr/bin/psql"
    }

    /// Runs one SQL command with psql against `url` and returns its rows (unaligned, `|` between fields).
    @discardableResult
    static func sql(_ url: String, _ command: String, timeout: Double = 30) throws -> [String] {
        let result = try runProgram(psql, ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", command],
                                           timeout: timeout)
        guard result.status == 0 else {
            throw SimError("psql \(command.debugDescription) failed (\(result.status)): \(result.err)")
        }
        return result.lines
    }

    /// `url` naming database `name` instead of its own.
    static func url(_ url: String, database name: String) throws -> String {
        guard var parts = URLComponents(string: url) else { throw SimError("cannot read the PostgreSQL URL \(url)") }
        parts.path = "/" + name
        guard let result = parts.string else { throw SimError("cannot make a PostgreSQL URL from \(url)") }
        return result
    }
}

/// A database of its own for one test, on the server of `VSPC_TEST_POSTGRES_URL` or a private one; `drop()`
/// removes it.
final class PostgresDatabase {
    let serverURL: String
    let name: String
    /// What `--db` takes.
    let url: String

    init(serverURL: String) throws {
        self.serverURL = serverURL
        name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        url = try PostgresFixture.url(serverURL, database: name)
        try PostgresFixture.sql(serverURL, "CREATE DATABASE \(name)")
    }

    /// A fresh database on the shared test server (skips when there is none).
    static func fresh(_ what: String) throws -> PostgresDatabase {
        try PostgresDatabase(serverURL: try PostgresFixture.serverURL(what))
    }

    @discardableResult
    func sql(_ command: String) throws -> [String] { try PostgresFixture.sql(url, command) }

    func drop() {
        _ = try? PostgresFixture.sql(serverURL, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }
}

/// A PostgreSQL server of the test's own (for stopping it under running daemons): initdb in a temporary folder as
/// user `postgres` (the tests run as root), pg_ctl on 127.0.0.1 and a free port, trust authentication.
final class PrivatePostgres {
    let bin: String
    let directory: URL
    let port: Int
    var dataDirectory: String { directory.appendingPathComponent("data").path }
    var logPath: String { directory.appendingPathComponent("postgres.log").path }
    /// The server's own database, for CREATE DATABASE.
    var url: String { "postgresql://postgres@127.0.0.1:\(port)/postgres" }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    init(_ what: String) throws {
        bin = try PostgresFixture.binDirectory(what)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-pg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        port = try freePort()
        if getuid() == 0 {
            guard let user = getpwnam("postgres") else {
                try? FileManager.default.removeItem(at: directory)
                throw PostgresFixture.unavailable("\(what): no user postgres (install Debian's postgresql)")
            }
            chown(directory.path, user.pointee.pw_uid, user.pointee.pw_gid)
        }
        chmod(directory.path, 0o700)
        try run("initdb", ["-D", dataDirectory, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"], timeout: 120)
    }

    /// Runs one of the server's programs, as user postgres when the test runs as root.
    private func run(_ program: String, _ arguments: [String], timeout: Double = 60) throws {
        let path = "\(bin)/\(program)"
        let result = getuid() == 0
            ? try runProgram("/usr/sbin/runuser", ["-u", "postgres", "--", path] + arguments, timeout: timeout)
            : try runProgram(path, arguments, timeout: timeout)
        guard result.status == 0 else {
            throw SimError("\(program) \(arguments) failed (\(result.status)): \(result.text) \(result.err)\n\(log)")
        }
    }

    /// Starts the server and waits until it accepts connections.
    func start() throws {
        try run("pg_ctl", ["-D", dataDirectory, "-l", logPath, "-w", "-t", "60",
                           "-o", "-h 127.0.0.1 -p \(port) -k \(directory.path) -c fsync=off -c max_connections=200",
                           "start"], timeout: 90)
    }

    /// Stops it at once (`-m fast`: clients are disconnected).
    func stop() throws {
        try run("pg_ctl", ["-D", dataDirectory, "-m", "fast", "-w", "-t", "60", "stop"], timeout: 90)
    }

    /// Stops the server if it runs and removes its folder.
    func cleanup() {
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("data/postmaster.pid").path) {
            try? run("pg_ctl", ["-D", dataDirectory, "-m", "immediate", "-w", "stop"])
        }
        try? FileManager.default.removeItem(at: directory)
    }
}
