import Foundation
import Logging
import NIOCore
import NIOPosix
import XCTest
@testable import VSPCNet
import VSPCCore

/// The HTTP listener (`--http`) on a real socket: metrics, health, console logs, and its bounds.
final class HTTPListenerTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    static var fixed: MetricsSnapshot { MetricsTests.fixed }
    static func exercise(_ m: VSPCMetrics) { MetricsTests.exercise(m) }
    static var expectedLines: [String] { MetricsTests.expectedLines }
    static var everySeries: [String] { MetricsTests.everySeries }

    static func services(_ box: SnapshotBox, logs: [ConsoleKey: [UInt8]] = [:], known: Set<ConsoleKey> = [],
                         healthy: Bool = true, notReady: String? = nil) -> HTTPServices {
        HTTPServices(
            snapshot: { box.read() }, healthy: { healthy }, notReady: { notReady }, knows: { known.contains($0) },
            consoleLog: { key, bytes in
                guard let data = logs[key] else { return nil }
                return bytes.map { Array(data.suffix($0)) } ?? data
            })
    }

    func assertLines(_ text: String, _ expected: [String], file: StaticString = #filePath, line: UInt = #line) {
        let lines = Set(text.split(separator: "\n").map(String.init))
        for want in expected {
            XCTAssertTrue(lines.contains(want), "missing line: \(want)\n--- exposition:\n\(text)", file: file, line: line)
        }
    }

    func startServer(_ metrics: VSPCMetrics, _ box: SnapshotBox, limits: HTTPAdmission.Limits = .init(),
                     services: HTTPServices? = nil, allow: AddressAllowList = .loopback) async throws -> (HTTPListener, Int) {
        let server = HTTPListener(metrics: metrics, services: services ?? Self.services(box), allow: allow,
                                  logger: Logger(label: "test"), limits: limits)
        let port = try await server.start(host: "127.0.0.1", port: 0)
        XCTAssertGreaterThan(port, 0)
        return (server, port)
    }

    func get(_ port: Int, _ request: String, responses: Int = 1, bodyless: Bool = false) async throws -> [HTTPResponse] {
        let bytes = try await RawTCP.exchange(
            group: group, port: port, send: Array(request.utf8), until: HTTPResponse.complete(responses, bodyless: bodyless))
        return HTTPResponse.parseAll(bytes, bodyless: bodyless)
    }

    func testScrapeServesEverySeries() async throws {
        let metrics = VSPCMetrics(version: "1.2.3-test")
        let box = SnapshotBox(Self.fixed)
        let (server, port) = try await startServer(metrics, box)
        Self.exercise(metrics)

        let responses = try await get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let response = try XCTUnwrap(responses.first)
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertEqual(response.header("Content-Length"), String(response.body.count))
        assertLines(response.text, Self.expectedLines)
        for name in Self.everySeries {
            XCTAssertTrue(response.text.contains("\n# TYPE \(name) "), "no \(name)")
        }
        #if os(Linux)
        let lines = response.text.split(separator: "\n")
        for name in ["process_open_fds", "process_max_fds", "process_resident_memory_bytes"] {
            let value = try XCTUnwrap(lines.first { $0.hasPrefix(name + " ") }?.split(separator: " ").last.flatMap { Double($0) })
            XCTAssertGreaterThan(value, 0, name)
        }
        #endif

        // The gauges follow the snapshot of each scrape, and counters keep counting.
        box.set(MetricsSnapshot(vmsConnected: 0, consoles: 4, clientsByDoor: ["tail": 7], portsFree: 1, vmotionsInProgress: 0))
        metrics.vmConnected()
        let second = try await get(port, "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assertLines(try XCTUnwrap(second.first).text, [
            "vspc_vms_connected 0.0", "vspc_consoles 4.0", "vspc_ports_free 1.0", #"vspc_clients{door="tail"} 7.0"#,
            #"vspc_clients{door="telnet"} 0.0"#, "vspc_vm_connections_total 4",
        ])
        XCTAssertEqual(box.calls, 2)
        await server.stop()
    }

    func testNotFoundAndMethodNotAllowed() async throws {
        let (server, port) = try await startServer(VSPCMetrics(version: "t"), SnapshotBox(Self.fixed))
        let notFound = try await get(port, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(notFound.first?.status, 404)
        for path in ["/", "/metricsx", "/console_log", "*"] {
            let response = try await get(port, "GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            XCTAssertEqual(response.first?.status, 404, path)
        }

        let post = try await get(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        XCTAssertEqual(post.first?.status, 405)
        XCTAssertEqual(post.first?.header("Allow"), "GET, HEAD")
        let delete = try await get(port, "DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(delete.first?.status, 405)

        let head = try await get(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", bodyless: true)
        XCTAssertEqual(head.first?.status, 200)
        XCTAssertGreaterThan(Int(head.first?.header("Content-Length") ?? "") ?? 0, 1000)
        await server.stop()
    }

    func testKeepAliveAndPipelinedRequests() async throws {
        let metrics = VSPCMetrics(version: "t")
        let (server, port) = try await startServer(metrics, SnapshotBox(Self.fixed))
        let one = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        let responses = try await get(port, one + "GET /other HTTP/1.1\r\nHost: x\r\n\r\n" + one, responses: 3)
        XCTAssertEqual(responses.map(\.status), [200, 404, 200])
        XCTAssertTrue(responses[2].text.contains("vspc_vms_connected 3.0"))

        // HTTP/1.0 without keep-alive is answered and closed.
        let old = try await get(port, "GET /metrics HTTP/1.0\r\n\r\n")
        XCTAssertEqual(old.first?.status, 200)
        await server.stop()
    }

    func testOversizedRequestsAreRefused() async throws {
        var limits = HTTPAdmission.Limits()
        limits.maxHeaderBytes = 4096
        let (server, port) = try await startServer(VSPCMetrics(version: "t"), SnapshotBox(Self.fixed), limits: limits)

        // One huge header: 400, then the connection is closed (the exchange ends on close).
        let bigHeader = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + String(repeating: "a", count: 64 * 1024) + "\r\n\r\n"
        let refused = try await RawTCP.exchange(group: group, port: port, send: Array(bigHeader.utf8))
        XCTAssertTrue(String(decoding: refused, as: UTF8.self).hasPrefix("HTTP/1.1 400 "), String(decoding: refused, as: UTF8.self))

        // A huge request line, and many small headers: refused the same way.
        let bigURL = "GET /metrics?" + String(repeating: "b", count: 10_000) + " HTTP/1.1\r\n\r\n"
        let refusedURL = try await RawTCP.exchange(group: group, port: port, send: Array(bigURL.utf8))
        XCTAssertTrue(String(decoding: refusedURL, as: UTF8.self).hasPrefix("HTTP/1.1 400 "))
        let manyHeaders = "GET /metrics HTTP/1.1\r\n" + (0..<200).map { "X-\($0): 1\r\n" }.joined() + "\r\n"
        let refusedMany = try await RawTCP.exchange(group: group, port: port, send: Array(manyHeaders.utf8))
        XCTAssertTrue(String(decoding: refusedMany, as: UTF8.self).hasPrefix("HTTP/1.1 400 "))

        // A body beyond the bound: the connection is closed without an answer.
        let bigBody = "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + String(repeating: "c", count: 100_000)
        let cut = try await RawTCP.exchange(group: group, port: port, send: Array(bigBody.utf8))
        XCTAssertFalse(String(decoding: cut, as: UTF8.self).contains("200 OK"))

        // Garbage: 400.
        let garbage = try await RawTCP.exchange(group: group, port: port, send: [0x16, 0x03, 0x01, 0x00, 0xFF, 0x0D, 0x0A, 0x0D, 0x0A])
        XCTAssertTrue(String(decoding: garbage, as: UTF8.self).hasPrefix("HTTP/1.1 400 "))

        // The server still serves.
        let ok = try await get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(ok.first?.status, 200)
        await server.stop()
    }

    func testConnectionLimit() async throws {
        var limits = HTTPAdmission.Limits()
        limits.maxConnections = 2
        let (server, port) = try await startServer(VSPCMetrics(version: "t"), SnapshotBox(Self.fixed), limits: limits)
        let held = [try await RawTCP.open(group: group, port: port).0, try await RawTCP.open(group: group, port: port).0]
        // The server accepts in order, so the third connection finds both slots taken.
        let third = try await get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(third.first?.status, 503)
        XCTAssertEqual(server.connectionCount, 2)

        for channel in held { try await channel.close() }
        try await waitFor { server.connectionCount == 0 }
        let after = try await get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(after.first?.status, 200)
        await server.stop()
    }

    func testIdleOrStuckConnectionsAreClosed() async throws {
        var limits = HTTPAdmission.Limits()
        limits.idleTimeout = .milliseconds(200)
        limits.requestTimeout = .milliseconds(200)
        let (server, port) = try await startServer(VSPCMetrics(version: "t"), SnapshotBox(Self.fixed), limits: limits)
        // Half a request, never finished: closed by the server without an answer (the exchange ends on close).
        let partial = try await RawTCP.exchange(group: group, port: port, send: Array("GET /metr".utf8))
        XCTAssertEqual(partial, [])
        // Kept alive after a response, then idle: closed too.
        let kept = try await RawTCP.exchange(
            group: group, port: port, send: Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        XCTAssertEqual(HTTPResponse.parseAll(kept).map(\.status), [200])
        try await waitFor { server.connectionCount == 0 }
        await server.stop()
    }

    func testStopClosesConnectionsAndFreesThePort() async throws {
        let (server, port) = try await startServer(VSPCMetrics(version: "t"), SnapshotBox(Self.fixed))
        let (_, collector) = try await RawTCP.open(group: group, port: port)
        await server.stop()
        _ = try await collector.result.get()  // ends on close
        XCTAssertEqual(server.connectionCount, 0)
        await server.stop()  // twice is harmless

        // The same port can be bound again by a new server.
        let again = HTTPListener(metrics: VSPCMetrics(version: "t"), services: Self.services(SnapshotBox(Self.fixed)),
                                 allow: .loopback, logger: Logger(label: "test"))
        let rebound = try await again.start(host: "127.0.0.1", port: port)
        XCTAssertEqual(rebound, port)
        await again.stop()
    }

    func testConsoleLogInEverySpellingOfTheUUID() async throws {
        let uuid = "0123456789abcdeffedcba9876543210"
        let key = ConsoleKey(uuid: uuid, label: "")
        let log: [UInt8] = Array("boot\r\n".utf8) + [0x00, 0xFF, 0x1B, 0x5B, 0x41] + Array("login: ".utf8)
        let silent = ConsoleKey(uuid: "00000000000000000000000000000001", label: "")
        let services = Self.services(SnapshotBox(Self.fixed), logs: [key: log, ConsoleKey(uuid: uuid, label: "com2"): [0x41]],
                                     known: [key, silent])
        let (server, port) = try await startServer(VSPCMetrics(version: "t"), SnapshotBox(Self.fixed), services: services)
        for spelling in [uuid, "01234567-89ab-cdef-fedc-ba9876543210", "0123456789ABCDEF-FEDCBA9876543210",
                         "01%2023%2045%2067%2089%20ab%20cd%20ef-fe%20dc%20ba%2098%2076%2054%2032%2010"] {
            let response = try await get(port, "GET /console_log/\(spelling) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            XCTAssertEqual(response.first?.status, 200, spelling)
            XCTAssertEqual(response.first?.body, log, spelling)
            XCTAssertEqual(response.first?.header("Content-Type"), "application/octet-stream")
        }
        let last = try await get(port, "GET /console_log/\(uuid)?bytes=7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(last.first?.body, Array("login: ".utf8))
        let labelled = try await get(port, "GET /console_log/\(uuid)?label=com2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(labelled.first?.body, [0x41])
        // Known but silent: an empty log. Unknown: 404. Not a uuid, or a bad count: 400.
        let empty = try await get(port, "GET /console_log/\(silent.uuid) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(empty.first?.status, 200)
        XCTAssertEqual(empty.first?.body, [])
        let unknown = try await get(port, "GET /console_log/ffffffffffffffffffffffffffffffff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(unknown.first?.status, 404)
        for bad in ["/console_log/nope", "/console_log/\(uuid)?bytes=-1", "/console_log/\(uuid)?bytes=x",
                    "/console_log/\(uuid)?label=a%20b"] {
            let response = try await get(port, "GET \(bad) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            XCTAssertEqual(response.first?.status, 400, bad)
        }
        await server.stop()
    }

    func testHealthAndReadiness() async throws {
        let box = SnapshotBox(Self.fixed)
        let (up, upPort) = try await startServer(VSPCMetrics(version: "t"), box, services: Self.services(box))
        let health = try await get(upPort, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(health.first?.status, 200)
        XCTAssertEqual(health.first?.text, "ok\n")
        let ready = try await get(upPort, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(ready.first?.status, 200)
        await up.stop()

        let (down, downPort) = try await startServer(
            VSPCMetrics(version: "t"), box, services: Self.services(box, healthy: false, notReady: "binding the ports of 3 known VM serial ports"))
        let sick = try await get(downPort, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(sick.first?.status, 503)
        let notReady = try await get(downPort, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(notReady.first?.status, 503)
        XCTAssertEqual(notReady.first?.text, "binding the ports of 3 known VM serial ports\n")
        await down.stop()
    }

    func testAnAddressOutsideTheAllowListIsRefused() async throws {
        // Only 127.0.0.2 may come: a connection from 127.0.0.1 gets 403 and never reaches the router.
        guard case .success(let only) = AddressAllowList.parse("127.0.0.2/32") else { return XCTFail("parse") }
        let box = SnapshotBox(Self.fixed)
        let (server, port) = try await startServer(VSPCMetrics(version: "t"), box, allow: only)
        let refused = try await get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(refused.first?.status, 403)
        XCTAssertEqual(refused.first?.text, "this address may not use vspcd's HTTP listener (--http-allow)\n")
        XCTAssertEqual(box.calls, 0)
        await server.stop()
    }

    /// Polls `condition` until it holds; fails after a generous deadline (never a timing assertion).
    func waitFor(_ condition: @escaping () -> Bool, file: StaticString = #filePath, line: UInt = #line) async throws {
        for _ in 0..<3000 {
            if condition() { return }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        XCTFail("condition not reached", file: file, line: line)
    }
}
