import Foundation

/// Several daemons sharing PostgreSQL (`config.cluster`): ownership, shared assignments, cross-node vMotion and
/// feeds of consoles owned elsewhere. Without `config.cluster` none of this runs.
extension ConcentratorStateMachine {
    mutating func clusterNews(_ news: ClusterNews) {
        guard config.cluster != nil else { return }
        _ = news
    }

    mutating func heartbeat() {
        guard config.cluster != nil else { return }
    }

    mutating func claimRetry(_ key: ConsoleKey) {
        guard config.cluster != nil else { return }
        _ = key
    }
}
