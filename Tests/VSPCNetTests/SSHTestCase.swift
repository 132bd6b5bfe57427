import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import VSPCCore
import XCTest
@testable import VSPCNet

/// Runs `SSHServer`s in-process with a `StubGateway`, and the real OpenSSH client against them with keys made by
/// ssh-keygen in a temporary folder.
class SSHTestCase: XCTestCase {
    var dir = ""
    var group: MultiThreadedEventLoopGroup!
    var servers: [SSHServer] = []
    let log = CapturedLog()
    let gateway = StubGateway()

    struct Key {
        var path: String
        var publicLine: String
        var fingerprint: String
    }

    override func setUpWithError() throws {
        for tool in ["/usr/bin/ssh", "/usr/bin/ssh-keygen"] where !FileManager.default.isExecutableFile(atPath: tool) {
            XCTFail("\(tool) is missing: install OpenSSH's client (apt-get install -y openssh-client)")
            throw XCTSkip("no \(tool)")
        }
        dir = NSTemporaryDirectory() + "vspcd-ssh-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDownWithError() throws {
        if let run = testRun, run.failureCount > 0 {
            print("server log:\n" + log.all.joined(separator: "\n"))
        }
        for server in servers { try blocking { await server.stop() } }
        try group?.syncShutdownGracefully()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let result = NIOLockedValueBox<Result<T, Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let outcome: Result<T, Error>
            do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
            result.withLockedValue { $0 = outcome }
            done.signal()
        }
        done.wait()
        return try result.withLockedValue { $0! }.get()
    }

    func run(_ path: String, _ arguments: [String]) throws -> ProcessResult {
        let process = try RunningProcess(path, arguments)
        process.closeStdin()
        let result = process.wait()
        XCTAssertEqual(result.status, 0, "\(path) \(arguments): \(result.stderr)")
        return result
    }

    func makeKey(_ name: String, _ type: [String], comment: String) throws -> Key {
        let path = "\(dir)/\(name)"
        _ = try run("/usr/bin/ssh-keygen", ["-q"] + type + ["-N", "", "-C", comment, "-f", path])
        let publicLine = try String(contentsOfFile: path + ".pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let listing = try run("/usr/bin/ssh-keygen", ["-lf", path + ".pub"]).stdoutText
        return Key(path: path, publicLine: publicLine, fingerprint: String(listing.split(separator: " ")[1]))
    }

    @discardableResult
    func startServer(_ authorizedKeys: String, hostKey: SSHHostKey = .ephemeral(),
                             _ tweak: (inout SSHServerSettings) -> Void = { _ in }) throws -> (SSHServer, AuthorizedKeysHolder) {
        let holder = AuthorizedKeysHolder(AuthorizedKeys.parse(authorizedKeys))
        var settings = SSHServerSettings(host: "127.0.0.1", port: 0)
        tweak(&settings)
        let server = SSHServer(settings: settings, hostKey: hostKey, authorizedKeys: holder, gateway: gateway,
                               group: group, logger: log.logger())
        try blocking { try await server.start() }
        servers.append(server)
        return (server, holder)
    }

    func sshArguments(_ user: String, _ key: Key, _ server: SSHServer, options: [String] = [],
                              command: [String] = []) -> [String] {
        // ssh keeps the first value given for an option: the test's own options go first.
        var arguments = options + ["-F", "/dev/null", "-i", key.path, "-p", "\(server.localAddress!.port!)", "-l", user]
        for option in ["StrictHostKeyChecking=no", "UserKnownHostsFile=\(dir)/known_hosts", "IdentitiesOnly=yes",
                       "IdentityAgent=none", "BatchMode=yes", "LogLevel=ERROR", "ConnectTimeout=30"] {
            arguments += ["-o", option]
        }
        return arguments + ["127.0.0.1"] + command
    }

    func ssh(_ user: String, _ key: Key, _ server: SSHServer, options: [String] = [], command: [String] = [],
                     stdin: [UInt8] = [], environment: [String: String]? = nil) throws -> ProcessResult {
        let process = try RunningProcess("/usr/bin/ssh", sshArguments(user, key, server, options: options, command: command),
                                         environment: environment)
        process.write(stdin)
        process.closeStdin()
        return process.wait()
    }

    func whoami(_ user: String, _ key: Key, readOnly: Bool = false, command: String = "-", term: String = "-") -> String {
        let comment = key.publicLine.split(separator: " ").last!
        return "user=\(user) key=\(comment) fp=\(key.fingerprint) ro=\(readOnly) cmd=\(command) term=\(term)\n"
    }
}
