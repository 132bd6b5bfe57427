import NIOConcurrencyHelpers
import Prometheus
import VSPCCore

/// The daemon's Prometheus series, in a registry of its own (not the global MetricsSystem), so each daemon,
/// and each test, has independent values.
///
/// Every method may be called from any thread: counters and gauges are atomics, histograms take a lock.
/// Label values come only from closed enums, so no peer can create a series; there are no per-VM labels.
public final class VSPCMetrics: @unchecked Sendable {  // its `var`s are guarded by `renderLock`
    /// Buckets of `vspc_vmotion_window_seconds`: a switchover takes well under a second to tens of seconds
    /// (the default `--vmotion-timeout` is 30 s).
    public static let vmotionWindowBuckets: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    /// Buckets of `vspc_store_commit_seconds`: one SQLite transaction, from a fraction of a millisecond on a
    /// quiet SSD to seconds on a stalled disk.
    public static let storeCommitBuckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10]

    let registry: PrometheusCollectorRegistry
    public let version: String

    // Gauges, set from a MetricsSnapshot and ProcessStats at scrape time.
    private let vmsConnected: Gauge
    private let consoles: Gauge
    private let clients: [String: Gauge]
    private let portsFree: Gauge
    private let vmotionsInProgress: Gauge
    private let openFDs: Gauge
    private let maxFDs: Gauge
    private let residentBytes: Gauge

    // Counters, moved by the event loop and the store's writer thread.
    private let vmOutputBytes: Counter
    private let clientInputBytes: Counter
    private let vmConnections: Counter
    private let vmDisconnects: [DisconnectReason: Counter]
    private let vmotions: [VMotionResult: Counter]
    private let clientsDropped: [DropReason: Counter]
    private let storeErrors: Counter
    private let eventsSuppressed: Counter

    private let vmotionWindow: ValueHistogram
    private let storeCommit: ValueHistogram

    /// Serialises "set the gauges, then render", so two concurrent scrapes each see their own snapshot.
    private let renderLock = NIOLock()
    private let logWritten: Counter
    private let logLost: Counter
    private let logErrors: Counter
    private let logQueued: Gauge
    /// The totals of the last snapshot, so that the counters move by the difference (under `renderLock`).
    private var logReported = ConsoleLogStatistics()
    private var matches: [String: Counter] = [:]
    private var matchesReported: [String: Int] = [:]
    /// The cluster's and the store queue's series, made at the first snapshot that has them (under `renderLock`).
    private var clusterSeries: ClusterSeries?
    private var storeSeries: (writes: Gauge, lag: Gauge)?

    /// - Parameter version: the value of `vspc_build_info{version}`.
    public init(version: String) {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        self.version = version

        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Gauge {
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
        }
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Counter {
            registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
        }
        func histogram(_ name: String, _ help: String, _ buckets: [Double]) -> ValueHistogram {
            registry.makeValueHistogram(
                descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), buckets: buckets)
        }

        vmsConnected = gauge("vspc_vms_connected", "VM serial port connections carrying a console.")
        consoles = gauge("vspc_consoles", "VM serial ports holding a port assignment, connected or not.")
        clients = Dictionary(uniqueKeysWithValues: Door.all.map {
            ($0.name, gauge("vspc_clients", "People attached to consoles, by door.", [("door", $0.name)]))
        })
        portsFree = gauge("vspc_ports_free", "Ports of the per-VM range not assigned.")
        vmotionsInProgress = gauge("vspc_vmotions_in_progress", "vMotions between GOAHEAD and their end.")
        openFDs = gauge("process_open_fds", "Number of open file descriptors.")
        maxFDs = gauge("process_max_fds", "Maximum number of open file descriptors (soft limit).")
        residentBytes = gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
        gauge("vspc_build_info", "vspcd build; the value is always 1.", [("version", version)]).set(to: 1)

        vmOutputBytes = counter("vspc_vm_output_bytes_total", "Console bytes received from VMs.")
        clientInputBytes = counter("vspc_client_input_bytes_total", "Console bytes received from people.")
        vmConnections = counter("vspc_vm_connections_total", "VM connections accepted on the proxy port.")
        vmDisconnects = Dictionary(uniqueKeysWithValues: DisconnectReason.allCases.map {
            ($0, counter("vspc_vm_disconnects_total", "VM connections ended, by reason.", [("reason", $0.rawValue)]))
        })
        vmotions = Dictionary(uniqueKeysWithValues: VMotionResult.allCases.map {
            ($0, counter("vspc_vmotions_total", "vMotions ended, by result.", [("result", $0.rawValue)]))
        })
        clientsDropped = Dictionary(uniqueKeysWithValues: DropReason.allCases.map {
            ($0, counter("vspc_clients_dropped_total", "People dropped or refused, by reason.", [("reason", $0.rawValue)]))
        })
        storeErrors = counter("vspc_store_errors_total", "Database writes that failed.")
        eventsSuppressed = counter("vspc_events_suppressed_total", "Events not recorded because of rate limits or a full queue.")

        logWritten = counter("vspc_console_log_written_bytes_total", "Console bytes written to the console log files.")
        logLost = counter("vspc_console_log_lost_bytes_total",
                          "Console bytes that never reached a console log file (disk full or failing, queue full).")
        logErrors = counter("vspc_console_log_write_errors_total", "Failed writes of console log files (retried or lost).")
        logQueued = gauge("vspc_console_log_queued_bytes", "Console bytes waiting to be written to the log files.")

        vmotionWindow = histogram(
            "vspc_vmotion_window_seconds", "Time from VMOTION-BEGIN to the end of the vMotion.", Self.vmotionWindowBuckets)
        storeCommit = histogram(
            "vspc_store_commit_seconds", "Duration of one database commit.", Self.storeCommitBuckets)
    }

    // MARK: Counters

    /// A VM connection was accepted on the proxy port.
    public func vmConnected(_ count: Int = 1) { vmConnections.increment(by: Int64(count)) }

    /// VM connections ended.
    public func vmDisconnected(reason: DisconnectReason, _ count: Int = 1) {
        if count > 0 { vmDisconnects[reason]?.increment(by: Int64(count)) }
    }

    /// Console data received from a VM (after telnet decoding). Zero or negative counts are ignored.
    public func vmOutput(bytes: Int) {
        if bytes > 0 { vmOutputBytes.increment(by: Int64(bytes)) }
    }

    /// Console data received from a person (after telnet decoding). Zero or negative counts are ignored.
    public func clientInput(bytes: Int) {
        if bytes > 0 { clientInputBytes.increment(by: Int64(bytes)) }
    }

    /// A vMotion ended (or a BEGIN, PEER or COMPLETE was refused).
    public func vmotion(_ result: VMotionResult) { vmotions[result]?.increment() }

    /// The time from VMOTION-BEGIN to COMPLETE, ABORT or expiry. Negative or non-finite values are ignored.
    public func vmotionWindow(seconds: Double) {
        if seconds.isFinite, seconds >= 0 { vmotionWindow.record(seconds) }
    }

    /// People dropped or refused.
    public func clientDropped(reason: DropReason, _ count: Int = 1) {
        if count > 0 { clientsDropped[reason]?.increment(by: Int64(count)) }
    }

    /// A database write failed.
    public func storeError() { storeErrors.increment() }

    /// One database commit took this long. Negative or non-finite values are ignored.
    public func storeCommit(seconds: Double) {
        if seconds.isFinite, seconds >= 0 { storeCommit.record(seconds) }
    }

    /// Events that were not recorded (rate-limited, or the store's queue was full).
    public func eventsSuppressed(_ count: Int = 1) {
        if count > 0 { eventsSuppressed.increment(by: Int64(count)) }
    }

    /// Shows `vspc_console_matches_total{pattern}` at 0 for each watch pattern from the start.
    public func watchPatterns(_ names: [String]) {
        renderLock.withLock { for name in names { _ = matchCounter(name) } }
    }

    /// Under `renderLock`.
    private func matchCounter(_ pattern: String) -> Counter {
        if let counter = matches[pattern] { return counter }
        let counter = registry.makeCounter(
            descriptor: MetricNameDescriptor(metricName: "vspc_console_matches_total", unitName: "",
                                             helpText: "Console lines that matched a watch pattern (--watch), by pattern."),
            labels: [("pattern", pattern)])
        matches[pattern] = counter
        return counter
    }

    // MARK: Exposition

    /// The Prometheus text exposition (format 0.0.4) with the gauges set from `snapshot` and `process`.
    /// Does not block on I/O; safe from any thread.
    public func exposition(snapshot: MetricsSnapshot, process: ProcessStats) -> [UInt8] {
        renderLock.withLock {
            vmsConnected.set(to: Double(snapshot.vmsConnected))
            consoles.set(to: Double(snapshot.consoles))
            for (door, gauge) in clients {
                gauge.set(to: Double(snapshot.clientsByDoor[door] ?? 0))
            }
            portsFree.set(to: Double(snapshot.portsFree))
            vmotionsInProgress.set(to: Double(snapshot.vmotionsInProgress))
            openFDs.set(to: Double(process.openFDs ?? 0))
            maxFDs.set(to: Double(process.maxFDs ?? 0))
            residentBytes.set(to: Double(process.residentBytes ?? 0))
            if let log = snapshot.consoleLog {
                if log.writtenBytes > logReported.writtenBytes { logWritten.increment(by: Int64(log.writtenBytes - logReported.writtenBytes)) }
                if log.lostBytes > logReported.lostBytes { logLost.increment(by: Int64(log.lostBytes - logReported.lostBytes)) }
                if log.writeErrors > logReported.writeErrors { logErrors.increment(by: Int64(log.writeErrors - logReported.writeErrors)) }
                logQueued.set(to: Double(log.queuedBytes))
                logReported = log
            }
            if let cluster = snapshot.cluster { observe(cluster) }
            if let queue = snapshot.storeQueue {
                let series = storeSeries ?? (
                    writes: registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "vspc_store_queue_writes", unitName: "",
                                                                         helpText: "Database writes queued, not committed yet."), labels: []),
                    lag: registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "vspc_store_lag_seconds", unitName: "",
                                                                         helpText: "Age of the oldest queued database write."), labels: []))
                storeSeries = series
                series.writes.set(to: Double(queue.writes))
                series.lag.set(to: queue.lagSeconds)
            }
            for (pattern, count) in snapshot.consoleMatches where count > matchesReported[pattern, default: 0] {
                matchCounter(pattern).increment(by: Int64(count - matchesReported[pattern, default: 0]))
                matchesReported[pattern] = count
            }
            return registry.emitToBuffer()
        }
    }

    /// `exposition(snapshot:process:)` with the process series read now. Reads /proc: call it off the event loop.
    public func exposition(snapshot: MetricsSnapshot) -> [UInt8] {
        exposition(snapshot: snapshot, process: ProcessStats.read())
    }

    /// Under `renderLock`.
    private func observe(_ cluster: ClusterStatistics) {
        let series = clusterSeries ?? ClusterSeries(registry)
        clusterSeries = series
        series.leases.set(to: Double(cluster.leases))
        series.alive.set(to: Double(cluster.nodesAlive))
        series.dead.set(to: Double(cluster.nodesDead))
        series.feedsIn.set(to: Double(cluster.feedsIn))
        series.feedsOut.set(to: Double(cluster.feedsOut))
        for (result, count) in cluster.vmotions where ClusterSeries.results.contains(result) {
            let reported = series.reported[result, default: 0]
            if count > reported, let counter = series.vmotions[result] {
                counter.increment(by: Int64(count - reported))
                series.reported[result] = count
            }
        }
    }
}

/// The series of a cluster node (`--db postgresql://`): made only in cluster mode.
private final class ClusterSeries {
    static let results = ["complete", "notfound"]
    let leases: Gauge
    let alive: Gauge
    let dead: Gauge
    let feedsIn: Gauge
    let feedsOut: Gauge
    let vmotions: [String: Counter]
    var reported: [String: Int] = [:]

    init(_ registry: PrometheusCollectorRegistry) {
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Gauge {
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
        }
        leases = gauge("vspc_cluster_leases", "Consoles this node owns.")
        alive = gauge("vspc_cluster_nodes", "Nodes of the cluster, by state.", [("state", "alive")])
        dead = gauge("vspc_cluster_nodes", "Nodes of the cluster, by state.", [("state", "dead")])
        feedsIn = gauge("vspc_cluster_feeds", "Forwarded sessions: feeds this node reads (in) and serves (out).", [("direction", "in")])
        feedsOut = gauge("vspc_cluster_feeds", "Forwarded sessions: feeds this node reads (in) and serves (out).", [("direction", "out")])
        vmotions = Dictionary(uniqueKeysWithValues: Self.results.map {
            ($0, registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "vspc_cluster_vmotions_total", unitName: "",
                                                                        helpText: "Cross-node vMotions seen by the destination's node, by result."),
                                      labels: [("result", $0)]))
        })
    }
}
