import Foundation
import NIOCore
import NIOPosix
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// Starts the real `vspcd` binary on free ports with a temporary database, and stops or kills it.
final class Daemon {
    let directory: URL
    let dbPath: String
    let proxyPort: Int
    let adminPort: Int
    /// The per-VM port range; the daemons of one cluster share one.
    var portRange: ClosedRange<Int>
    /// The address of the proxy and admin endpoints (a cluster's daemons each have one: 127.0.0.2, 127.0.0.3 ...).
    var host = "127.0.0.1"
    /// `--db` when it is not the SQLite file `dbPath` (a postgresql:// URL).
    var database: String?
    var extraArguments: [String]
    /// Start the daemon under `ulimit -n` with this many descriptors (soft and hard).
    var openFileLimit: Int?
    /// Added to the daemon's environment (e.g. NOTIFY_SOCKET).
    var environment: [String: String] = [:]
    /// The log level flags every daemon gets; a test of the log level clears them.
    var logLevelArguments = ["--debug"]
    /// Serve the admin protocol on this Unix socket (`--admin unix:PATH`) instead of `127.0.0.1:adminPort`.
    var adminUnixPath: String?
    private(set) var process: Process?
    let logPath: String

    static var binDirectory: URL {
        // The test bundle lives beside the package's executables in .build/<config>/.
        let bundle = Bundle(for: Daemon.self).bundleURL
        let candidates = [bundle.deletingLastPathComponent(), URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        for dir in candidates where FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("vspcd").path) {
            return dir
        }
        return candidates[0]
    }

    static func binary(_ name: String) -> String { binDirectory.appendingPathComponent(name).path }

    /// Each daemon gets its own slice of per-VM ports so tests do not meet each other's leftovers.
    nonisolated(unsafe) static var nextRangeStart = 21000 + Int(getpid() % 40) * 250

    init(portRangeSize: Int = 200, extraArguments: [String] = [], directory: URL? = nil) throws {
        let dir = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        self.directory = dir
        self.dbPath = dir.appendingPathComponent("vspcd.db").path
        self.logPath = dir.appendingPathComponent("vspcd.log").path
        self.proxyPort = try freePort()
        self.adminPort = try freePort()
        if Daemon.nextRangeStart + portRangeSize > 32700 { Daemon.nextRangeStart = 21000 }
        self.portRange = Daemon.nextRangeStart...(Daemon.nextRangeStart + portRangeSize - 1)
        Daemon.nextRangeStart += portRangeSize
        self.extraArguments = extraArguments
    }

    var arguments: [String] {
        ["--db", database ?? dbPath, "--proxy", "\(host):\(proxyPort)", "--admin", adminArgument,
         "--port-range-start", "\(portRange.lowerBound)", "--port-range-end", "\(portRange.upperBound)"]
            + logLevelArguments + extraArguments
    }

    /// Starts the daemon and waits until its admin endpoint answers.
    func start(timeout: Double = 30) async throws {
        let p = Process()
        if let openFileLimit {
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "ulimit -n \(openFileLimit) && exec \"$0\" \"$@\"", Daemon.binary("vspcd")] + arguments
        } else {
            p.executableURL = URL(fileURLWithPath: Daemon.binary("vspcd"))
            p.arguments = arguments
        }
        p.currentDirectoryURL = directory
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        _ = try log.seekToEnd()
        p.standardOutput = log
        p.standardError = log
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if !p.isRunning { throw SimError("vspcd exited with \(p.terminationStatus) at start-up:\n\(self.log)") }
            if (try? await list()) != nil { return }
            if Date() > deadline { throw SimError("vspcd did not answer on its admin port:\n\(self.log)") }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// What `--admin` is given, and what `vspc --admin` needs to reach this daemon.
    var adminArgument: String { adminUnixPath.map { "unix:\($0)" } ?? "\(host):\(adminPort)" }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until the log has `count` lines containing `text`, and returns those lines.
    @discardableResult
    func waitForLog(_ text: String, count: Int = 1, timeout: Double = 30) async throws -> [String] {
        var lines: [String] = []
        try await waitUntil("\(count) × \(text.debugDescription) in the log of vspcd", timeout: timeout) {
            lines = log.split(separator: "\n").map(String.init).filter { $0.contains(text) }
            return lines.count >= count
        }
        return lines
    }

    /// The last `bytes` of the log (from the first whole line in them), without reading the rest of the file.
    func logTail(bytes: Int) -> String {
        guard let file = FileHandle(forReadingAtPath: logPath) else { return "(no log at \(logPath))" }
        defer { try? file.close() }
        let size = (try? file.seekToEnd()) ?? 0
        let start = size > UInt64(bytes) ? size - UInt64(bytes) : 0
        try? file.seek(toOffset: start)
        let data = (try? file.readToEnd()) ?? Data()
        var text = String(decoding: data, as: UTF8.self)
        if start > 0, let newline = text.firstIndex(of: "\n") { text = String(text[text.index(after: newline)...]) }
        return text
    }

    func list() async throws -> [ConsoleInfo] {
        let endpoint: AdminEndpoint = adminUnixPath.map { .unix(path: $0) } ?? .tcp(Endpoint(host: host, port: adminPort))
        let response = try await AdminClient.request(endpoint, AdminRequest(command: "list"))
        guard response.ok, let vms = response.vms else { throw SimError("list failed: \(response.error ?? "?")") }
        return vms
    }

    /// Waits until `condition` holds for the listing.
    @discardableResult
    func waitForList(_ what: String, timeout: Double = 20, _ condition: ([ConsoleInfo]) -> Bool) async throws -> [ConsoleInfo] {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let vms = try await list()
            if condition(vms) { return vms }
            if Date() > deadline { throw SimError("timed out waiting for \(what); listing: \(vms)") }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    /// The VM's console port, once it is listed.
    func port(of uuid: String, label: String = "") async throws -> Int {
        // Listed and saved: a port that is listed before the disk has it is marked unsaved.
        let vms = try await waitForList("\(uuid) to be listed") {
            $0.contains { $0.uuid == uuid && $0.label == label && $0.saved != false }
        }
        return vms.first { $0.uuid == uuid && $0.label == label }!.port
    }

    /// SIGTERM and wait for a clean exit.
    func stop() async throws {
        guard let p = process, p.isRunning else { return }
        p.terminate()
        try await waitForExit(p)
        XCTAssertEqual(p.terminationStatus, 0, "vspcd did not exit cleanly:\n\(log)")
    }

    func kill9() async throws {
        guard let p = process, p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        try await waitForExit(p)
    }

    private func waitForExit(_ p: Process) async throws {
        let deadline = Date().addingTimeInterval(20)
        while p.isRunning {
            if Date() > deadline { throw SimError("vspcd did not exit") }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    func cleanup() {
        if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs a command-line tool of the package (e.g. `vspc`) and returns its exit code, stdout and stderr.
    static func run(_ tool: String, _ arguments: [String], cwd: URL? = nil) throws -> (status: Int32, out: String, err: String) {
        let result = try runTool(tool, arguments, cwd: cwd)
        return (result.status, result.text, result.err)
    }

    /// Runs a tool with its stdout as raw bytes; stderr is drained alongside so neither pipe can fill up and
    /// stall it, and the tool is killed after `timeout` seconds.
    static func runTool(_ tool: String, _ arguments: [String], cwd: URL? = nil, timeout: Double = 60) throws -> ToolResult {
        try runProcess(binary(tool), arguments, cwd: cwd, timeout: timeout)
    }

    /// Runs any program to its end (killed after `timeout` seconds), with its output and errors read whole.
    static func runProcess(_ path: String, _ arguments: [String], environment: [String: String]? = nil,
                           cwd: URL? = nil, timeout: Double = 60) throws -> ToolResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        if let cwd { p.currentDirectoryURL = cwd }
        if let environment { p.environment = environment }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let errBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errBox.append(err.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
        let pid = p.processIdentifier
        let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        watchdog.cancel()
        return ToolResult(status: p.terminationStatus, out: outData, err: String(decoding: errBox.value, as: UTF8.self))
    }
}

struct ToolResult {
    var status: Int32
    var out: Data
    var err: String
    var text: String { String(decoding: out, as: UTF8.self) }
    var lines: [String] { text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty } }
}

final class DataBox: @unchecked Sendable {
    let lock = NSLock()
    var data = Data()
    func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
    var value: Data { lock.lock(); defer { lock.unlock() }; return data }
}

/// A port that was free a moment ago.
/// A port nothing listens on now, never one this test process handed out before: the kernel may give the same
/// free port to two calls in a row (a daemon's proxy and admin ports once collided that way).
func freePort() throws -> Int {
    for _ in 0..<64 {
        let port = try anyFreePort()
        let fresh = handedOut.withLock { $0.insert(port).inserted }
        if fresh { return port }
    }
    throw SimError("no fresh free port")
}

private let handedOut = LockedPorts()

private final class LockedPorts: @unchecked Sendable {
    private let lock = NSLock()
    private var ports: Set<Int> = []
    func withLock<T>(_ body: (inout Set<Int>) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&ports)
    }
}

private func anyFreePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
    }
    guard bound == 0 else { throw SimError("cannot bind a free port") }
    withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A uuid (32 hex) unique to a test.
func testUUID(_ n: Int, _ salt: UInt32 = UInt32.random(in: 0...UInt32.max)) -> String {
    String(format: "%08x%08x%016llx", salt, n, UInt64(n) &* 0x9E37_79B9_7F4A_7C15)
}

/// Deterministic bytes covering every value, 0x00, 0x11 and 0xFF included.
func patternBytes(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
    var x = seed
    return (0..<count).map { i in
        if i % 7 == 0 { return [0x00, 0x11, 0xFF, 0x0D, 0x0A][i / 7 % 5] }
        x = x &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: x >> 56)
    }
}

func fixture(_ name: String) -> String {
    Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)!.path
}

/// Polls the daemon's event table (written asynchronously, read here read-only) until `condition` holds.
@discardableResult
func waitForEvents(_ daemon: Daemon, uuid: String, _ what: String, timeout: Double = 30,
                   _ condition: ([ConsoleEvent]) -> Bool) async throws -> [ConsoleEvent] {
    let deadline = Date().addingTimeInterval(timeout)
    var events: [ConsoleEvent] = []
    while true {
        if let store = try? Store(path: daemon.dbPath, readOnly: true), let e = try? store.events(uuid: uuid) {
            events = e
            if condition(events) { return events }
        }
        if Date() > deadline {
            throw SimError("timed out waiting for \(what); events: \(events.map { "\($0.kind)[\($0.detail ?? "")]" })")
        }
        try await Task.sleep(nanoseconds: 20_000_000)
    }
}

/// Polls `condition` until it holds; fails after `timeout` seconds, a bound for a failure only.
func waitUntil(_ what: String, timeout: Double = 30, _ condition: () throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while try !condition() {
        if Date() > deadline { throw SimError("timed out after \(timeout) s waiting for \(what)") }
        try await Task.sleep(nanoseconds: 20_000_000)
    }
}
