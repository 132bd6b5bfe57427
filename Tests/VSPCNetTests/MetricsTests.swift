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
        "vspc_console_log_written_bytes_total", "vspc_console_log_lost_bytes_total",
        "vspc_console_log_write_errors_total", "vspc_console_log_queued_bytes",
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
        // 7 disconnect reasons, 5 results, 5 drop reasons, every door, all present from the start.
        XCTAssertEqual(samples.filter { $0.hasPrefix("vspc_vm_disconnects_total{") }.count, DisconnectReason.allCases.count)
        XCTAssertEqual(samples.filter { $0.hasPrefix("vspc_vmotions_total{") }.count, 5)
        XCTAssertEqual(samples.filter { $0.hasPrefix("vspc_clients_dropped_total{") }.count, DropReason.allCases.count)
        XCTAssertEqual(samples.filter { $0.hasPrefix("vspc_clients{") }.count, Door.all.count)
    }

    func testConsoleLogAndWatchSeriesFollowTheSnapshots() {
        let metrics = VSPCMetrics(version: "t")
        metrics.watchPatterns(["panic", "oops"])
        var snapshot = Self.fixed
        let first = String(decoding: metrics.exposition(snapshot: snapshot, process: ProcessStats(openFDs: 1, maxFDs: 2, residentBytes: 3)), as: UTF8.self)
        assertLines(first, [#"vspc_console_matches_total{pattern="panic"} 0"#, #"vspc_console_matches_total{pattern="oops"} 0"#])
        var log = ConsoleLogStatistics()
        log.writtenBytes = 1000
        log.lostBytes = 10
        log.writeErrors = 2
        log.queuedBytes = 77
        snapshot.consoleLog = log
        snapshot.consoleMatches = ["panic": 3]
        _ = metrics.exposition(snapshot: snapshot, process: ProcessStats(openFDs: 1, maxFDs: 2, residentBytes: 3))
        log.writtenBytes = 1500
        snapshot.consoleLog = log
        snapshot.consoleMatches = ["panic": 4, "oops": 1]
        let text = String(decoding: metrics.exposition(snapshot: snapshot, process: ProcessStats(openFDs: 1, maxFDs: 2, residentBytes: 3)), as: UTF8.self)
        assertLines(text, [
            "vspc_console_log_written_bytes_total 1500", "vspc_console_log_lost_bytes_total 10",
            "vspc_console_log_write_errors_total 2", "vspc_console_log_queued_bytes 77.0",
            #"vspc_console_matches_total{pattern="panic"} 4"#, #"vspc_console_matches_total{pattern="oops"} 1"#,
        ])
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

    /// Polls `condition` until it holds; fails after a generous deadline (never a timing assertion).
    func waitFor(_ condition: @escaping () -> Bool, file: StaticString = #filePath, line: UInt = #line) async throws {
        for _ in 0..<3000 {
            if condition() { return }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        XCTFail("condition not reached", file: file, line: line)
    }
}
