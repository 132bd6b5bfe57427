import Foundation
import NIOCore
import VSPCCore

/// Several daemons sharing PostgreSQL (`config.concentrator.cluster`): the agent that runs the core's cluster
/// requests against the shared records, and the internal link where feeds come in and go out.
extension VSPCServer {
    /// Sets up the agent and the driver's runner; before the machine's `.start`, so that its first requests
    /// find them. Without `config.concentrator.cluster` (one daemon alone) nothing happens.
    func prepareCluster() async throws {
        guard let cluster = config.concentrator.cluster else { return }
        guard let records = clusterRecords else {
            throw ServerError("cluster mode without the cluster's records")
        }
        let driver = self.driver
        let loop = driver.loop
        let agent = ClusterAgent(records: records, config: cluster, logger: logger) { news in
            loop.execute { driver.handle(.cluster(news)) }
        }
        let store = self.store
        agent.reloadAssignments = { try store.loadAssignments() }
        agent.failure = { store.failure(of: $0) }
        clusterAgent = agent
        try await loop.submit { driver.cluster = agent }.get()
    }

    /// Opens the internal link and starts listening to the records' notifications. After `.start`.
    func startCluster() async throws {
        guard let cluster = config.concentrator.cluster, let agent = clusterAgent, let linkConfig = config.clusterLink else { return }
        if let refusal = linkConfig.refusal { throw ServerError(refusal) }
        var settings = ClusterLinkSettings(node: cluster.node, listen: linkConfig.listen)
        settings.serverTLS = linkConfig.tls?.server
        settings.clientTLS = linkConfig.tls?.client
        let high = max(config.clientBufferLimit + config.scrollbackBytes, 64 * 1024)
        settings.waterMark = .init(low: high / 2, high: high)
        let driver = self.driver
        let link = try await driver.loop.submit {
            ClusterLink(settings: settings, host: driver, logger: self.logger)
        }.get()
        link.ownerEpoch = { [weak agent] key in agent?.ownEpoch(key) }
        agent.openFeed = { [weak link] id, key, node, address, since in
            guard let link else { return }
            link.loop.execute { link.openFeed(id, key, node: node, link: address, sinceEpoch: since) }
        }
        try await link.start()
        clusterLink = link
        try agent.start()
        logger.notice("cluster node \(cluster.node): link on \(linkConfig.listen.host):\(link.port ?? linkConfig.listen.port)\(linkConfig.tls != nil ? " (mutual TLS)" : " (in the clear, loopback)"), advertised as \(cluster.linkAddress); lease timeout \(String(format: "%g", cluster.leaseTimeout)) s")
    }

    /// Closes the link (its feeds end); the records stay open until the store closes.
    func stopCluster() async {
        await clusterLink?.stop()
    }

    /// The cluster's gauges and counts for a scrape, on the loop (nil: one daemon alone).
    func clusterStatistics() -> ClusterStatistics? {
        guard let agent = clusterAgent else { return nil }
        let s = agent.statistics
        return ClusterStatistics(leases: s.leases, nodesAlive: s.alive, nodesDead: s.dead,
                                 feedsIn: clusterLink?.feedsRead ?? 0, feedsOut: clusterLink?.feedsServed ?? 0,
                                 vmotions: s.vmotions)
    }
}
