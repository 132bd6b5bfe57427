import VSPCCore

/// Carries out the concentrator's `ClusterRequest`s off the event loop (against `ClusterRecords`, and the
/// internal link for feeds) and hands what comes of them back to the driver as `.cluster(ClusterNews)` events.
protocol ClusterRunner: AnyObject {
    func run(_ request: ClusterRequest)
}
