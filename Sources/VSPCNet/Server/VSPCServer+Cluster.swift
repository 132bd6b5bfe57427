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
        agent.openFeed = { [weak link] id, key, node, address, since in
            guard let link else { return }
            // The driver asks on the loop: at once, so that the feed's sink is there for the core's next action.
            guard link.loop.inEventLoop else {
                return link.loop.execute { link.openFeed(id, key, node: node, link: address, sinceEpoch: since) }
            }
            link.openFeed(id, key, node: node, link: address, sinceEpoch: since)
        }
        agent.sendBreak = { [weak driver] id in
            driver?.loop.execute { (driver?.sink(id) as? LinkSink)?.sendBreak() }
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

    /// The cluster's gauges and counts for a scrape, on the loop (nil: one daemon alone): leases, nodes and feeds
    /// as the core knows them; cross-node vMotions completed here, and those whose row was not found in time.
    func clusterStatistics() -> ClusterStatistics? {
        guard let agent = clusterAgent else { return nil }
        let driver = self.driver
        var statistics = driver.read { machine in
            let nodes = machine.clusterNodeCounts
            let feeds = machine.forwardedSessions
            // `in`: feeds this node reads for its people (outgoing connections); `out`: feeds it serves.
            return ClusterStatistics(leases: machine.consolesOwnedHere, nodesAlive: nodes.alive, nodesDead: nodes.dead,
                                     feedsIn: feeds.outgoing, feedsOut: feeds.incoming)
        }
        statistics.vmotions = ["complete": driver.crossNodeVMotions, "notfound": agent.vmotionsNotFound]
        return statistics
    }
}
