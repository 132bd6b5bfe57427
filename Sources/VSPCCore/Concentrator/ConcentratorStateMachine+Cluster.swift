import Foundation

/// Several daemons sharing PostgreSQL (`config.cluster`): ownership, shared assignments, cross-node vMotion and
/// feeds of consoles owned elsewhere. Without `config.cluster` none of this runs.
extension ConcentratorStateMachine {
    mutating func clusterNews(_ news: ClusterNews) {
        guard config.cluster != nil else { return }
        // Cross-node vMotion and feeds (+ClusterVMotion, +ClusterFeed).
        if clusterMoveNews(news) { return }
        // TEMPORARY until the ownership handler: owners, claims and nodes, for the feeds (see +ClusterFeed).
        applyOwnersForFeeds(news)
    }

    mutating func heartbeat() {
        guard config.cluster != nil else { return }
    }

    mutating func claimRetry(_ key: ConsoleKey) {
        guard config.cluster != nil else { return }
        _ = key
    }
}
