import Foundation
import NIOCore
import NIOPosix
import XCTest
@testable import VSPCNet
import VSPCCore

final class MetricsTests: XCTestCase {
    static let fixed = MetricsSnapshot(
        vmsConnected: 3, consoles: 5, clientsByDoor: ["telnet": 2, "ssh": 1, "bogus": 9],
        portsFree: 12762, vmotionsInProgress: 1)

    static let everySeries = [
        "vspc_vms_connected", "vspc_consoles", "vspc_clients", "vspc_ports_free", "vspc_vmotions_in_progress",
        "vspc_vm_output_bytes_total", "vspc_client_input_bytes_total", "vspc_vm_connections_total",
        "vspc_vm_disconnects_total", "vspc_vmotions_total", "vspc_clients_dropped_total", "vspc_store_errors_total",
        "vspc_events_suppressed_total", "vspc_vmotion_window_seconds", "vspc_store_commit_seconds",
        "process_open_fds", "process_max_fds", "process_resident_memory_bytes", "vspc_build_info",
    ]

    var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    /// Moves every counter and histogram by a known amount.
    static func exercise(_ m: VSPCMetrics) {
        m.vmConnected(); m.vmConnected(); m.vmConnected()
        m.vmDisconnected(reason: .closed); m.vmDisconnected(reason: .closed); m.vmDisconnected(reason: .refused)
        m.vmOutput(bytes: 100); m.vmOutput(bytes: 50); m.vmOutput(bytes: 0); m.vmOutput(bytes: -7)
        m.clientInput(bytes: 9)
        m.vmotion(.complete); m.vmotion(.complete); m.vmotion(.notnow); m.vmotion(.rejected)
        m.vmotionWindow(seconds: 0.3); m.vmotionWindow(seconds: 45); m.vmotionWindow(seconds: -1); m.vmotionWindow(seconds: .nan)
        m.clientDropped(reason: .slow); m.clientDropped(reason: .fdLimit)
        m.storeError()
        m.storeCommit(seconds: 0.002)
        m.eventsSuppressed(); m.eventsSuppressed(1233); m.eventsSuppressed(0)
    }

    /// The exposition lines every test expects after `exercise` with `fixed` and these process values.
    static let expectedLines = [
        "vspc_vms_connected 3.0", "vspc_consoles 5.0", "vspc_ports_free 12762.0", "vspc_vmotions_in_progress 1.0",
        #"vspc_clients{door="telnet"} 2.0"#, #"vspc_clients{door="ssh"} 1.0"#, #"vspc_clients{door="tail"} 0.0"#,
        "vspc_vm_output_bytes_total 150", "vspc_client_input_bytes_total 9", "vspc_vm_connections_total 3",
        #"vspc_vm_disconnects_total{reason="closed"} 2"#, #"vspc_vm_disconnects_total{reason="refused"} 1"#,
        #"vspc_vm_disconnects_total{reason="timeout"} 0"#, #"vspc_vm_disconnects_total{reason="shutdown"} 0"#,
        #"vspc_vmotions_total{result="complete"} 2"#, #"vspc_vmotions_total{result="notnow"} 1"#,
        #"vspc_vmotions_total{result="rejected"} 1"#, #"vspc_vmotions_total{result="abort"} 0"#,
        #"vspc_vmotions_total{result="timeout"} 0"#,
        #"vspc_clients_dropped_total{reason="slow"} 1"#, #"vspc_clients_dropped_total{reason="fd_limit"} 1"#,
        #"vspc_clients_dropped_total{reason="expired"} 0"#,
        "vspc_store_errors_total 1", "vspc_events_suppressed_total 1234",
        #"vspc_vmotion_window_seconds_bucket{le="0.25"} 0"#, #"vspc_vmotion_window_seconds_bucket{le="0.5"} 1"#,
        #"vspc_vmotion_window_seconds_bucket{le="30.0"} 1"#, #"vspc_vmotion_window_seconds_bucket{le="60.0"} 2"#,
        #"vspc_vmotion_window_seconds_bucket{le="+Inf"} 2"#, "vspc_vmotion_window_seconds_sum 45.3",
        "vspc_vmotion_window_seconds_count 2",
        #"vspc_store_commit_seconds_bucket{le="0.001"} 0"#, #"vspc_store_commit_seconds_bucket{le="0.0025"} 1"#,
        #"vspc_store_commit_seconds_bucket{le="+Inf"} 1"#, "vspc_store_commit_seconds_count 1",
        #"vspc_build_info{version="1.2.3-test"} 1.0"#,
        "# TYPE vspc_vm_output_bytes_total counter", "# TYPE vspc_clients gauge",
        "# TYPE vspc_vmotion_window_seconds histogram",
    ]

    func assertLines(_ text: String, _ expected: [String], file: StaticString = #filePath, line: UInt = #line) {
        let lines = Set(text.split(separator: "\n").map(String.init))
        for want in expected {
            XCTAssertTrue(lines.contains(want), "missing line: \(want)\n--- exposition:\n\(text)", file: file, line: line)
        }
    }

    func testExpositionHasEverySeriesWithItsValue() {
        let metrics = VSPCMetrics(version: "1.2.3-test")
        Self.exercise(metrics)
        let process = ProcessStats(openFDs: 17, maxFDs: 1_048_576, residentBytes: 123_456_789)
        let text = String(decoding: metrics.exposition(snapshot: Self.fixed, process: process), as: UTF8.self)
        assertLines(text, Self.expectedLines + [
            "process_open_fds 17.0", "process_max_fds 1048576.0", "process_resident_memory_bytes 123456789.0",
        ])
        // A door outside the closed set creates no series; no other label values exist.
        XCTAssertFalse(text.contains("bogus"))
        let samples = text.split(separator: "\n").filter { !$0.hasPrefix("#") }
        let names = Set(samples.map { String($0.prefix { $0 != "{" && $0 != " " }) })
        let histogramParts = Set(["_bucket", "_sum", "_count"].flatMap { suffix in
            ["vspc_vmotion_window_seconds", "vspc_store_commit_seconds"].map { $0 + suffix }
        })
        XCTAssertEqual(names, Set(Self.everySeries).subtracting(["vspc_vmotion_window_seconds", "vspc_store_commit_seconds"])
            .union(histogramParts))
        // 7 disconnect reasons, 5 results, 5 drop reasons, 3 doors, all present from the start.
        XCTAssertEqual(samples.filter { $0.hasPrefix("vspc_vm_disconnects_total{") }.count, DisconnectReason.allCases.count)
        XCTAssertEqual(samples.filter { $0.hasPrefix("vspc_vmotions_total{") }.count, 5)
        XCTAssertEqual(samples.filter { $0.hasPrefix("vspc_clients_dropped_total{") }.count, DropReason.allCases.count)
        XCTAssertEqual(samples.filter { $0.hasPrefix("vspc_clients{") }.count, 3)
    }

    func testIndependentRegistries() {
        let a = VSPCMetrics(version: "a")
        let b = VSPCMetrics(version: "b")
        a.vmConnected()
        let process = ProcessStats(openFDs: nil, maxFDs: nil, residentBytes: nil)
        let textB = String(decoding: b.exposition(snapshot: MetricsSnapshot(), process: process), as: UTF8.self)
        assertLines(textB, ["vspc_vm_connections_total 0", "process_open_fds 0.0", #"vspc_build_info{version="b"} 1.0"#])
        XCTAssertFalse(textB.contains(#"version="a""#))
    }

    func testCountersFromManyThreads() {
        let metrics = VSPCMetrics(version: "t")
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<1000 {
                metrics.vmOutput(bytes: 3)
                metrics.vmotion(.abort)
                metrics.storeCommit(seconds: 0.001)
            }
        }
        let text = String(decoding: metrics.exposition(snapshot: MetricsSnapshot(), process: ProcessStats(openFDs: 1, maxFDs: 1, residentBytes: 1)), as: UTF8.self)
        assertLines(text, [
            "vspc_vm_output_bytes_total 24000", #"vspc_vmotions_total{result="abort"} 8000"#,
            "vspc_store_commit_seconds_count 8000", #"vspc_store_commit_seconds_bucket{le="0.001"} 8000"#,
        ])
    }

    func testProcessStatsReadsThisProcess() throws {
        #if os(Linux)
        let stats = ProcessStats.read()
        let open = try XCTUnwrap(stats.openFDs)
        XCTAssertGreaterThan(open, 2)  // at least stdin, stdout, stderr
        XCTAssertGreaterThan(try XCTUnwrap(stats.residentBytes), 1 << 20)
        var limit = rlimit()
        XCTAssertEqual(getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit), 0)
        XCTAssertEqual(stats.maxFDs, limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur))
        #endif
    }

    // MARK: Over HTTP

    func startServer(_ metrics: VSPCMetrics, _ box: SnapshotBox, limits: MetricsServer.Limits = .init()) async throws -> (MetricsServer, Int) {
        let server = MetricsServer(metrics: metrics, limits: limits) { box.read() }
        let port = try await server.start(group: group, host: "127.0.0.1", port: 0)
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
        XCTAssertEqual(response.header("Connection"), "close")
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
        for path in ["/", "/metricsx", "/metrics/", "*"] {
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
        XCTAssertEqual(responses.first?.header("Connection"), "keep-alive")
        XCTAssertTrue(responses[2].text.contains("vspc_vms_connected 3.0"))

        // HTTP/1.0 without keep-alive is answered and closed.
        let old = try await get(port, "GET /metrics HTTP/1.0\r\n\r\n")
        XCTAssertEqual(old.first?.status, 200)
        XCTAssertEqual(old.first?.header("Connection"), "close")
        await server.stop()
    }

    func testOversizedRequestsAreRefused() async throws {
        var limits = MetricsServer.Limits()
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
        var limits = MetricsServer.Limits()
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
        var limits = MetricsServer.Limits()
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
        let again = MetricsServer(metrics: VSPCMetrics(version: "t")) { MetricsSnapshot() }
        let rebound = try await again.start(group: group, host: "127.0.0.1", port: port)
        XCTAssertEqual(rebound, port)
        do {
            _ = try await again.start(group: group, host: "127.0.0.1", port: 0)
            XCTFail("a second start must throw")
        } catch {}
        await again.stop()
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
