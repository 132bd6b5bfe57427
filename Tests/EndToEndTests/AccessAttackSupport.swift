import Foundation
import VSPCCore
import VSPCSim
import XCTest

/// A TCP socket to 127.0.0.1:`port` from a chosen loopback address (127.0.0.2 plays a stranger), with blocking
/// reads bounded by a timeout.
final class RawSocket {
    let fd: Int32

    /// Binds to `source` (port 0), then connects; throws when either fails.
    init(from source: String, to port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SimError("socket: \(errno)") }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_port = 0
        inet_pton(AF_INET, source, &local.sin_addr)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr)
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } }
        guard bound == 0 else {
            close(fd)
            throw SimError("bind \(source): \(errno)")
        }
        let connected = withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, size) } }
        guard connected == 0 else {
            close(fd)
            throw SimError("connect to \(port) from \(source): \(errno)")
        }
    }

    deinit { close(fd) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// What the peer sends until it closes, or until `timeout` passes (nil then: still open).
    func readToClose(timeout: Double) -> [UInt8]? {
        var out: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 50)
            if ready <= 0 { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return out }
            out += buffer[0..<n]
        }
        return nil
    }

    /// Bytes read so far by `isClosedByPeer`.
    private(set) var received: [UInt8] = []
    private var closed = false

    /// Whether the peer has closed (or reset) the connection by now, without waiting: what it sent before is
    /// read (into `received`) to see whether the end follows.
    var isClosedByPeer: Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !closed {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                received += buffer[0..<n]
                continue
            }
            if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { closed = true }
            break
        }
        return closed
    }
}

/// A plain HTTP/1.1 GET from 127.0.0.1 with `Connection: close`: the status code and the body.
func httpGet(port: Int, path: String, timeout: Double = 30) throws -> (status: Int, body: String) {
    let socket = try RawSocket(from: "127.0.0.1", to: port)
    socket.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    guard let bytes = socket.readToClose(timeout: timeout) else { throw SimError("no complete answer within \(timeout) s") }
    let text = String(decoding: bytes, as: UTF8.self)
    let fields = text.split(separator: " ", maxSplits: 2)
    guard fields.count >= 2, let status = Int(fields[1]) else { throw SimError("not an HTTP response: \(text.prefix(80))") }
    let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    return (status, body)
}
