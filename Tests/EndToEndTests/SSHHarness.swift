import Foundation
import VSPCSim
import XCTest

/// A key pair made by the real `ssh-keygen`, in a test's folder.
struct SSHKey {
    /// The private key file (what `ssh -i` takes); the public key is beside it with `.pub`.
    let path: String
    let comment: String

    /// `type` is `ed25519`, `ecdsa` (P-256) or `rsa`.
    static func generate(_ type: String, comment: String, in directory: URL) throws -> SSHKey {
        let path = directory.appendingPathComponent("id_\(type)_\(comment.replacingOccurrences(of: "@", with: "_"))").path
        var arguments = ["-q", "-t", type, "-N", "", "-C", comment, "-f", path]
        if type == "ecdsa" { arguments += ["-b", "256"] }
        if type == "rsa" { arguments += ["-b", "2048"] }
        let result = try runProgram("/usr/bin/ssh-keygen", arguments)
        guard result.status == 0 else { throw SimError("ssh-keygen \(type) failed: \(result.err)") }
        return SSHKey(path: path, comment: comment)
    }

    /// The `.pub` line: `ssh-ed25519 AAAA... comment`.
    var publicLine: String {
        get throws {
            try String(contentsOfFile: path + ".pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// `SHA256:...`, as `ssh-keygen -lf key.pub` prints it.
    var fingerprint: String {
        get throws {
            let result = try runProgram("/usr/bin/ssh-keygen", ["-l", "-f", path + ".pub"])
            let fields = result.text.split(separator: " ")
            guard result.status == 0, fields.count >= 2, fields[1].hasPrefix("SHA256:") else {
                throw SimError("ssh-keygen -lf: \(result.text) \(result.err)")
            }
            return String(fields[1])
        }
    }
}

/// The OpenSSH client options every test uses: no user or system config, a private known_hosts, only the given
/// key, never a prompt, no escape character of ssh's own (`~`), errors only.
func sshOptions(port: Int, key: SSHKey, knownHosts: String, strictHostKeyChecking: String = "no") -> [String] {
    ["-F", "/dev/null", "-p", "\(port)", "-i", key.path,
     "-o", "StrictHostKeyChecking=\(strictHostKeyChecking)", "-o", "UserKnownHostsFile=\(knownHosts)",
     "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
     "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20", "-e", "none"]
}

/// A child process started with posix_spawn, its stdout and stderr collected as they arrive by two threads.
///
/// Not Foundation's `Process`: on Linux it learns that a child exited from a socket the child inherits, and `ssh`
/// closes every descriptor above stderr when it starts (`closefrom`), so Foundation takes it for dead, waits for it
/// with a blocking `waitpid`, and from then on sees no other child exit. Here the exit is polled with `WNOHANG`.
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    private let stdinFD: Int32
    private let output = DataBox()
    private let errors = DataBox()
    private let readers = DispatchGroup()
    private let lock = NSLock()
    private var status: Int32?

    /// Starts `path arguments`; its stdin is a pipe the test writes to (`interactive`) or /dev/null.
    init(_ path: String, _ arguments: [String], interactive: Bool) throws {
        var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        // Close-on-exec, so no other child keeps a pipe open (the child's own ends are dup2'ed to 0, 1 and 2).
        func makePipe(_ fds: inout [Int32]) throws {
            guard pipe(&fds) == 0 else { throw SimError("pipe: \(errno)") }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
        try makePipe(&outPipe)
        try makePipe(&errPipe)
        if interactive { try makePipe(&inPipe) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if interactive {
            posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        // The spawning thread may block signals (dispatch's threads do) and the test ignores SIGPIPE: the child
        // starts with no signal blocked and the usual dispositions, so SIGTERM ends it.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t(), defaults = sigset_t()
        sigemptyset(&noSignals)
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attributes, argv, environ)
        for fd in [inPipe[0], outPipe[1], errPipe[1]] where fd >= 0 { close(fd) }
        guard rc == 0 else {
            for fd in [inPipe[1], outPipe[0], errPipe[0]] where fd >= 0 { close(fd) }
            throw SimError("posix_spawn \(path): \(rc)")
        }
        pid = child
        stdinFD = inPipe[1]
        for (fd, box) in [(outPipe[0], output), (errPipe[0], errors)] {
            readers.enter()
            let group = readers
            Thread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n < 0, errno == EINTR { continue }
                    if n <= 0 { break }
                    box.append(Data(buffer[0..<n]))
                }
                close(fd)
                group.leave()
            }.start()
        }
    }

    var out: Data { output.value }
    var err: String { String(decoding: errors.value, as: UTF8.self) }

    /// The exit status once the child has exited (128 + the signal when a signal ended it), else nil.
    var exitStatus: Int32? {
        lock.lock()
        defer { lock.unlock() }
        if status == nil {
            var raw: Int32 = 0
            if waitpid(pid, &raw, WNOHANG) == pid {
                status = raw & 0x7F == 0 ? (raw >> 8) & 0xFF : 128 + (raw & 0x7F)
            }
        }
        return status
    }

    var isRunning: Bool { exitStatus == nil }

    /// Writes to the child's stdin; false once it is closed or gone.
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        guard stdinFD >= 0 else { return false }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(stdinFD, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Waits (blocking) up to `timeout` seconds for the child to exit and its output to be read to the end.
    func waitForExit(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while exitStatus == nil, Date() < deadline { usleep(5000) }
        guard let status = exitStatus else { return nil }
        _ = readers.wait(timeout: .now() + max(1, deadline.timeIntervalSinceNow))
        return status
    }

    /// SIGTERM (then SIGKILL after 5 s) to this child only, and reaps it.
    func terminate() {
        if stdinFD >= 0 { close(stdinFD) }
        guard isRunning else { return }
        kill(pid, SIGTERM)
        if waitForExit(timeout: 5) == nil {
            kill(pid, SIGKILL)
            _ = waitForExit(timeout: 5)
        }
    }
}

/// Runs a program to its end with stdin from /dev/null; stdout raw, stderr as text. Killed after `timeout` s.
func runProgram(_ path: String, _ arguments: [String], timeout: Double = 60) throws -> ToolResult {
    let child = try ChildProcess(path, arguments, interactive: false)
    guard let status = child.waitForExit(timeout: timeout) else {
        child.terminate()
        throw SimError("\(path) \(arguments) did not finish within \(timeout) s; stderr: \(child.err)")
    }
    return ToolResult(status: status, out: child.out, err: child.err)
}

/// An interactive `ssh` run: what the test writes goes to its stdin (a pipe), and its stdout and stderr are
/// collected as they arrive.
final class SSHSession: @unchecked Sendable {
    let name: String
    private let child: ChildProcess

    /// Starts `/usr/bin/ssh ARGUMENTS`.
    init(_ name: String, _ arguments: [String]) throws {
        self.name = name
        child = try ChildProcess("/usr/bin/ssh", arguments, interactive: true)
    }

    /// Everything ssh printed on stdout so far, raw.
    var out: [UInt8] { [UInt8](child.out) }
    var text: String { String(decoding: child.out, as: UTF8.self) }
    var err: String { child.err }

    /// Writes bytes to ssh's stdin (ignored once ssh is gone).
    func type(_ bytes: [UInt8]) { child.write(bytes) }

    func type(_ text: String) { type(Array(text.utf8)) }

    /// `Ctrl-]` then `key`: an escape menu command.
    func menu(_ key: Character) { type([0x1D, key.asciiValue!]) }

    /// Waits until stdout satisfies `condition`.
    func waitForOutput(_ what: String, timeout: Double = 30, _ condition: ([UInt8]) -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition(out) {
            if Date() > deadline {
                throw SimError("\(name): timed out waiting for \(what); stdout so far: \(text.debugDescription), stderr: \(err.debugDescription)")
            }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    /// Waits until `text` appears `count` times on stdout.
    func waitFor(_ text: String, count: Int = 1, timeout: Double = 30) async throws {
        try await waitForOutput("\(count) × \(text.debugDescription)", timeout: timeout) {
            occurrences(of: text, in: String(decoding: $0, as: UTF8.self)) >= count
        }
    }

    /// Waits for ssh to exit and returns its status.
    @discardableResult
    func waitForExit(timeout: Double = 30) async throws -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let status = child.exitStatus { return status }
            if Date() > deadline { throw SimError("\(name): ssh did not exit; stdout: \(text.debugDescription), stderr: \(err.debugDescription)") }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    var isRunning: Bool { child.isRunning }

    /// Ends ssh (this process only) and reaps it.
    func stop() { child.terminate() }
}

func occurrences(of text: String, in haystack: String) -> Int {
    haystack.components(separatedBy: text).count - 1
}

/// The bytes after the first occurrence of `marker` (nil when it is not there).
func outputAfter(_ marker: String, in data: [UInt8]) -> [UInt8]? {
    let needle = Array(marker.utf8)
    guard needle.count <= data.count else { return nil }
    for i in 0...(data.count - needle.count) where data[i..<(i + needle.count)].elementsEqual(needle) {
        return Array(data[(i + needle.count)...])
    }
    return nil
}
