import XCTest
@testable import VSPCNet
import VSPCCore

/// The cluster's series appear only on a node of a cluster, the store queue's only when the store says.
final class ClusterMetricsTests: XCTestCase {
    let process = ProcessStats(openFDs: 1, maxFDs: 2, residentBytes: 3)

    func text(_ metrics: VSPCMetrics, _ snapshot: MetricsSnapshot) -> Set<String> {
        Set(String(decoding: metrics.exposition(snapshot: snapshot, process: process), as: UTF8.self)
            .split(separator: "\n").map(String.init))
    }

    func testOneDaemonAloneHasNoClusterSeries() {
        let lines = text(VSPCMetrics(version: "t"), MetricsSnapshot())
        XCTAssertFalse(lines.contains { $0.contains("vspc_cluster_") || $0.contains("vspc_store_queue") || $0.contains("vspc_store_lag") })
    }

    func testANodeShowsItsLeasesNodesFeedsAndMigrations() {
        let metrics = VSPCMetrics(version: "t")
        var snapshot = MetricsSnapshot()
        snapshot.cluster = ClusterStatistics(leases: 4, nodesAlive: 2, nodesDead: 1, feedsIn: 3, feedsOut: 5,
                                             vmotions: ["complete": 2, "notfound": 1, "other": 9])
        snapshot.storeQueue = StoreQueueStatistics(writes: 12, lagSeconds: 1.5)
        var lines = text(metrics, snapshot)
        for want in ["vspc_cluster_leases 4.0", #"vspc_cluster_nodes{state="alive"} 2.0"#, #"vspc_cluster_nodes{state="dead"} 1.0"#,
                     #"vspc_cluster_feeds{direction="in"} 3.0"#, #"vspc_cluster_feeds{direction="out"} 5.0"#,
                     #"vspc_cluster_vmotions_total{result="complete"} 2"#, #"vspc_cluster_vmotions_total{result="notfound"} 1"#,
                     "vspc_store_queue_writes 12.0", "vspc_store_lag_seconds 1.5"] {
            XCTAssertTrue(lines.contains(want), "missing \(want) in \(lines.sorted())")
        }
        XCTAssertFalse(lines.contains { $0.contains("other") })
        // Counters move by what the totals moved.
        snapshot.cluster?.vmotions["complete"] = 5
        lines = text(metrics, snapshot)
        XCTAssertTrue(lines.contains(#"vspc_cluster_vmotions_total{result="complete"} 5"#), "\(lines.sorted())")
    }
}
