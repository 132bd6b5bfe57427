import Foundation
import VSPCSim
import XCTest

/// One answer of the daemon's HTTP listener, as it came over the wire.
struct HTTPReply {
    /// Everything the daemon sent, status line to the last body byte.
    var raw: [UInt8]
    var status: Int
    /// Header names in lower case.
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// `GET path` on a connection of its own (from `localHost` when given) that asks to be closed after the answer;
/// reads until the daemon closes it.
func httpGet(port: Int, _ path: String, from localHost: String? = nil, timeout: Double = 30) async throws -> HTTPReply {
    let peer = try await RawPeer.connect(port: port, localHost: localHost)
    defer { peer.close() }
    peer.write(raw: Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8))
    try await peer.waitForClose(timeout: timeout)
    return try parseHTTPReply(peer.raw)
}

/// Splits a whole HTTP/1.x answer into status, headers and body; the body must be as long as Content-Length says.
func parseHTTPReply(_ raw: [UInt8]) throws -> HTTPReply {
    let separator: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A]
    guard let end = (0...max(0, raw.count - 4)).first(where: { raw.count >= 4 && Array(raw[$0..<($0 + 4)]) == separator }) else {
        throw SimError("no end of the HTTP head in \(String(decoding: raw.prefix(300), as: UTF8.self).debugDescription)")
    }
    let head = String(decoding: raw[..<end], as: UTF8.self).components(separatedBy: "\r\n")
    let statusWords = head[0].split(separator: " ")
    guard statusWords.count >= 2, statusWords[0].hasPrefix("HTTP/1."), let status = Int(statusWords[1]) else {
        throw SimError("not an HTTP status line: \(head[0].debugDescription)")
    }
    var headers: [String: String] = [:]
    for line in head.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    let body = Array(raw[(end + 4)...])
    if let length = headers["content-length"] {
        guard Int(length) == body.count else {
            throw SimError("Content-Length \(length) but \(body.count) body bytes")
        }
    }
    return HTTPReply(raw: raw, status: status, headers: headers, body: body)
}

/// The value of one Prometheus series (its name with its labels, as printed), or nil when it is not there.
func seriesValue(_ exposition: String, _ series: String) -> Double? {
    for line in exposition.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}

/// Scrapes /metrics until `condition` holds for it; returns that scrape.
@discardableResult
func waitForMetrics(port: Int, _ what: String, timeout: Double = 60, _ condition: (String) -> Bool) async throws -> String {
    let deadline = Date().addingTimeInterval(timeout)
    var last = ""
    while true {
        let reply = try await httpGet(port: port, "/metrics")
        last = reply.text
        if reply.status == 200, condition(last) { return last }
        if Date() > deadline {
            throw SimError("timed out waiting for \(what) on /metrics; last scrape:\n\(last)")
        }
        try await Task.sleep(nanoseconds: 50_000_000)
    }
}

/// 32 hex digits as RFC 4122 spells a uuid: 8-4-4-4-12 with dashes.
func rfc4122(_ hex32: String) -> String {
    let c = Array(hex32)
    return [c[0..<8], c[8..<12], c[12..<16], c[16..<20], c[20..<32]].map { String($0) }.joined(separator: "-")
}

/// The bytes of a file, or nil when it does not exist.
func fileBytes(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map { [UInt8]($0) }
}

/// Waits until the file at `path` holds at least `count` bytes and returns all of them: the console log writer
/// writes a moment after the output passed through the daemon.
func waitForFile(_ path: String, count: Int, timeout: Double = 60) async throws -> [UInt8] {
    var bytes: [UInt8] = []
    try await waitUntil("\(count) bytes in \(path)", timeout: timeout) {
        bytes = fileBytes(path) ?? []
        return bytes.count >= count
    }
    return bytes
}

/// The permission bits of a file or folder.
func permissions(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
}

/// Prints `bytes` on the VM in pieces, as a guest's serial driver would.
func output(on vm: SimulatedVM, _ bytes: [UInt8], piece: Int = 4096) {
    for start in stride(from: 0, to: bytes.count, by: piece) {
        vm.output(Array(bytes[start..<min(bytes.count, start + piece)]))
    }
}

extension Daemon {
    /// Waits until the HTTP listener is bound: it opens after the admin endpoint, which `start()` waits for.
    func waitForHTTP() async throws {
        try await waitForLog("HTTP on http://")
    }
}
