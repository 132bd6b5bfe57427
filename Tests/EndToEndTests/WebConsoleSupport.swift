import Foundation
import VSPCSim
import XCTest

/// One headless Chromium, driven by Fixtures/web_console.py (selenium and chromedriver): JSON commands in, one
/// JSON answer per command out.
final class Browser {
    static let python = "/usr/bin/python3"
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let lines = DataBox()
    private let errors = DataBox()
    private var answered = 0

    init() throws {
        process.executableURL = URL(fileURLWithPath: Self.python)
        process.arguments = [fixture("web_console.py")]
        process.standardInput = input
        process.standardOutput = output
        let err = Pipe()
        process.standardError = err
        let lines = self.lines, errors = self.errors
        output.fileHandleForReading.readabilityHandler = { lines.append($0.availableData) }
        err.fileHandleForReading.readabilityHandler = { errors.append($0.availableData) }
        try process.run()
    }

    /// Sends one command and returns its value; a refused command throws with the script's reason.
    @discardableResult
    func run(_ command: [Any], timeout: Double = 90) async throws -> Any? {
        let line = try JSONSerialization.data(withJSONObject: command) + Data([0x0A])
        input.fileHandleForWriting.write(line)
        let wanted = answered + 1
        var answers: [Substring] = []
        try await waitUntil("the browser's answer to \(command.first ?? "")", timeout: timeout) {
            answers = String(decoding: lines.value, as: UTF8.self).split(separator: "\n")
            if !process.isRunning, answers.count < wanted {
                throw SimError("the browser script exited: \(String(decoding: errors.value.suffix(4000), as: UTF8.self))")
            }
            return answers.count >= wanted
        }
        answered = wanted
        let answer = try JSONSerialization.jsonObject(with: Data(answers[wanted - 1].utf8)) as? [String: Any] ?? [:]
        guard answer["ok"] as? Bool == true else { throw SimError("browser: \(answer["error"] ?? "no answer")") }
        return answer["value"]
    }

    func open(_ url: String) async throws { try await run(["open", url]) }
    func text(_ command: String) async throws -> String { try await run([command]) as? String ?? "" }

    /// Waits until the terminal shows `text`; returns what it shows.
    @discardableResult
    func wait(for text: String, seconds: Double = 30) async throws -> String {
        try await run(["wait", text, seconds], timeout: seconds + 60) as? String ?? ""
    }

    func stop() {
        if process.isRunning {
            input.fileHandleForWriting.write(Data("[\"quit\"]\n".utf8))
            let deadline = Date().addingTimeInterval(20)
            while process.isRunning, Date() < deadline { usleep(50_000) }
            if process.isRunning { process.terminate() }
        }
        output.fileHandleForReading.readabilityHandler = nil
    }

    /// Why browser tests cannot run here (nil: they can): the Debian packages they need.
    static func missingPackages() -> String? {
        var missing: [String] = []
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") { missing.append("chromium") }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver") { missing.append("chromium-driver") }
        if !FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/selenium") { missing.append("python3-selenium") }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/esbuild") { missing.append("esbuild") }
        if !FileManager.default.fileExists(atPath: "/usr/share/nodejs/xterm/lib/public/Terminal.js") { missing.append("node-xterm") }
        return missing.isEmpty ? nil : missing.joined(separator: " ")
    }
}

/// The terminal emulator bundled as `contrib/install.sh` does: Debian's xterm.js through esbuild.
func bundleWebAssets(into dir: URL) throws {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/esbuild")
    p.arguments = ["/usr/share/nodejs/xterm/lib/public/Terminal.js", "--bundle", "--format=iife", "--global-name=Xterm",
                   "--log-level=warning", "--outfile=\(dir.appendingPathComponent("xterm.js").path)"]
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw SimError("esbuild failed with \(p.terminationStatus)") }
    try FileManager.default.copyItem(atPath: "/usr/share/nodejs/xterm/lib/xterm.css",
                                     toPath: dir.appendingPathComponent("xterm.css").path)
}

/// One HTTP/1.1 request over a plain socket, and the response's head and whatever body came within the
/// timeout (for requests URLSession will not send as they are, such as a WebSocket upgrade).
func rawHTTP(port: Int, _ request: String, timeout: Int = 10) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SimError("socket: errno \(errno)") }
    defer { close(fd) }
    var addr = StuckSocket.address(port)
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw SimError("connect to port \(port): errno \(errno)") }
    var limit = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    let bytes = Array(request.utf8)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while !String(decoding: received, as: UTF8.self).contains("\r\n\r\n") {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        received += buffer[0..<n]
    }
    return String(decoding: received, as: UTF8.self)
}
