import Foundation
import XCTest
@testable import VSPCStore
import VSPCCore

/// A fresh PostgreSQL database per test, on the server `VSPC_TEST_POSTGRES_URL` names (`.ci/run` starts one):
/// `CREATE DATABASE t_<random>`, dropped at the end. Without the variable the test is skipped, except on CI
/// (`CI` set), where that is a failure.
final class PostgresTestDatabase {
    let url: String
    private let adminURL: String
    private let name: String

    init(_ test: XCTestCase) throws {
        guard let admin = ProcessInfo.processInfo.environment["VSPC_TEST_POSTGRES_URL"], !admin.isEmpty else {
            if ProcessInfo.processInfo.environment["CI"] != nil {
                XCTFail("VSPC_TEST_POSTGRES_URL is not set on CI: .ci/run starts a PostgreSQL server for these tests")
            }
            throw XCTSkip("""
                VSPC_TEST_POSTGRES_URL is not set: these tests need a PostgreSQL server (Debian's postgresql package; \
                .ci/run starts one)
                """)
        }
        adminURL = admin
        name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        try PostgresAdmin.execute(admin, ["CREATE DATABASE \(name)"])
        url = try PostgresAdmin.url(admin, database: name)
        test.addTeardownBlock { [adminURL, name] in
            _ = try? PostgresAdmin.execute(adminURL, ["DROP DATABASE IF EXISTS \(name) WITH (FORCE)"])
        }
    }

    /// The text of the first column of each row of `sql`'s answer, on this database.
    func rows(_ sql: String) throws -> [String] {
        try PostgresAdmin.execute(url, [sql])
    }

    func count(_ table: String) throws -> Int {
        Int(try rows("SELECT count(*)::text FROM \(table)").first ?? "") ?? -1
    }
}

/// A PostgreSQL server of a test's own (for stopping it): initdb in a temporary folder, as the `postgres` user
/// when the tests run as root, on 127.0.0.1 and a free port. Needs `VSPC_TEST_PG_BIN` (`.ci/run` sets it).
final class PrivatePostgres {
    let bin: String
    let dir: String
    let port: Int
    private let asUser: String?

    init(_ test: XCTestCase) throws {
        guard let bin = ProcessInfo.processInfo.environment["VSPC_TEST_PG_BIN"], !bin.isEmpty else {
            if ProcessInfo.processInfo.environment["CI"] != nil {
                XCTFail("VSPC_TEST_PG_BIN is not set on CI: .ci/run sets it")
            }
            throw XCTSkip("VSPC_TEST_PG_BIN is not set: this test starts its own PostgreSQL (Debian's postgresql package)")
        }
        self.bin = bin
        asUser = getuid() == 0 ? "postgres" : nil
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vspc-pg-\(UUID().uuidString.prefix(8))").path
        port = try Self.freePort()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if let asUser { try run("/bin/chown", [asUser, dir], asUser: nil) }
        try run("\(bin)/initdb", ["-D", "\(dir)/data", "-A", "trust", "-U", "postgres", "--no-sync"])
        try start()
        test.addTeardownBlock { [self] in
            _ = try? run("\(bin)/pg_ctl", ["-D", "\(dir)/data", "-m", "immediate", "-w", "stop"])
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    var url: String { "postgresql://postgres@127.0.0.1:\(port)/postgres?sslmode=disable" }

    func start() throws {
        try run("\(bin)/pg_ctl", ["-D", "\(dir)/data", "-l", "\(dir)/log", "-w", "-o",
                                  "-p \(port) -k \(dir) -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    }

    func stop() throws {
        try run("\(bin)/pg_ctl", ["-D", "\(dir)/data", "-m", "fast", "-w", "stop"])
    }

    @discardableResult
    private func run(_ tool: String, _ arguments: [String]) throws -> String {
        try run(tool, arguments, asUser: asUser)
    }

    /// Runs a tool to its end, its output in a file. Spawned directly, with every descriptor but 0-2 closed and
    /// those on files: the server pg_ctl starts keeps what it inherits, and would hold the tests' pipes open.
    @discardableResult
    private func run(_ tool: String, _ arguments: [String], asUser: String?) throws -> String {
        // bash closes every inherited descriptor above 2, then runs the tool in `dir`.
        let script = """
            for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done 2>/dev/null; cd "$0" && exec "$@"
            """
        let argv = ["/bin/bash", "-c", script, dir] + (asUser.map { ["/usr/sbin/runuser", "-u", $0, "--"] } ?? [])
            + [tool] + arguments
        let outPath = "\(dir)/command.out"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ)
        guard spawned == 0 else {
            throw PostgresURL.Invalid(message: "cannot run \(argv[0]): error \(spawned)")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw PostgresURL.Invalid(message: "\(argv.joined(separator: " ")) failed (status \(status)): \(text)")
        }
        return text
    }

    /// A TCP port nobody listens on now (the kernel's pick).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw PostgresURL.Invalid(message: "socket failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { throw PostgresURL.Invalid(message: "bind failed") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
