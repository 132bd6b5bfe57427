import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
import VSPCCore

/// Runs the concentrator's cluster requests against the shared records (`ClusterRecords`, which may block) on
/// serial queues of its own, never on the event loop: a console's claims and migrations on the lane its key
/// picks (so that they stay in order, and many consoles' go at once), the rest on one queue. It hands each
/// outcome back as `ClusterNews` through `deliver` (the daemon's: `loop.execute { driver.handle(.cluster(news)) }`),
/// turns the records' notifications into news, and opens feeds (and sends BREAKs) through the internal link. It
/// decides nothing.
final class ClusterAgent: ClusterRunner, @unchecked Sendable {
    let records: any ClusterRecords
    let config: ClusterConfig
    let logger: Logger
    private let deliver: @Sendable (ClusterNews) -> Void
    private let queue = DispatchQueue(label: "vspcd.cluster", qos: .userInitiated)
    /// A console's claims, publications and withdrawals, by its key (as many as the records' connections).
    private let lanes: [DispatchQueue]
    /// Polls of pending finds are timed here, apart from `queue`, so that waiting never blocks a request.
    private let timers = DispatchQueue(label: "vspcd.cluster.timers")
    /// Every assignment, for a re-read after the database connection came back (nil: not re-read).
    var reloadAssignments: (@Sendable () throws -> [Assignment])?
    /// What a records error means (the backend's `failure(of:)`); any error it cannot name is `.unreachable`.
    var failure: (@Sendable (any Error) -> StoreFailure)?
    /// The internal link, for `.openFeed` and `.sendBreak` (set before the first request).
    var openFeed: (@Sendable (ConnectionID, ConsoleKey, String, String, Int64?) -> Void)?
    var sendBreak: (@Sendable (ConnectionID) -> Void)?
    /// How often a pending find looks again.
    var pollInterval: DispatchTimeInterval = .milliseconds(20)

    /// On `queue`: the finds still waiting.
    private var finds: [Int: Find] = [:]
    private var nextFind = 0
    /// Finds that gave up at their deadline (`vspc_cluster_vmotions_total{result="notfound"}`).
    private let notFound = NIOLockedValueBox(0)

    private struct Find {
        var id: ConnectionID
        var cookie: [UInt8]
        var deadline: DispatchTime
        var request: ClusterRequest
    }

    init(records: any ClusterRecords, config: ClusterConfig, logger: Logger, lanes: Int = 4,
         deliver: @escaping @Sendable (ClusterNews) -> Void) {
        self.lanes = (0..<max(1, lanes)).map { DispatchQueue(label: "vspcd.cluster.lane\($0)", qos: .userInitiated) }
        self.records = records
        self.config = config
        self.logger = logger
        self.deliver = deliver
    }

    /// Starts listening to the records' notifications, then reads every owner (news `.owners(full: true)`).
    func start() throws {
        try records.listen { [weak self] notice in
            guard let self else { return }
            self.queue.async { self.noticed(notice) }
        }
        queue.async { self.rereadOwners() }
    }

    func run(_ request: ClusterRequest) {
        if case let .openFeed(id, key, node, link, since) = request {
            guard let openFeed else {
                return deliver(.feedClosed(id, reason: "this node has no cluster link"))
            }
            return openFeed(id, key, node, link, since)
        }
        if case .sendBreak(let id) = request {
            sendBreak?(id)
            return
        }
        let key: ConsoleKey?
        switch request {
        case .claim(let k), .withdrawVMotion(let k, _): key = k
        case .publishVMotion(let shared, _): key = shared.key
        case .heartbeat, .findVMotion, .openFeed, .sendBreak: key = nil
        }
        (key.map(lane) ?? queue).async { self.carryOut(request) }
    }

    private func lane(_ key: ConsoleKey) -> DispatchQueue {
        lanes[Int(UInt(bitPattern: key.hashValue) % UInt(lanes.count))]
    }

    /// Cross-node migrations whose PEER found no published row before the deadline.
    var vmotionsNotFound: Int { notFound.withLockedValue { $0 } }

    // MARK: on `queue` (a lane for a console's own requests: those touch no state here)

    private func carryOut(_ request: ClusterRequest) {
        do {
            switch request {
            case .heartbeat(let consoles):
                let nodes = try records.heartbeat(node: config.node, link: config.linkAddress, consoles: consoles,
                                                  leaseTimeout: config.leaseTimeout)
                deliver(.nodes(nodes))
            case .claim(let key):
                let owner = try records.claim(key, node: config.node)
                deliver(.claimed(key, owner))
            case let .publishVMotion(shared, generation):
                try records.publish(shared)
                deliver(.vmotionPublished(shared.key, generation: generation))
            case let .findVMotion(id, cookie, until):
                if let shared = try records.findVMotion(cookie: cookie, secretLength: ConcentratorStateMachine.secretLength) {
                    return deliver(.vmotionFound(id, shared))
                }
                let deadline = DispatchTime.now() + .nanoseconds(Int(max(0, min(until, 3600)) * 1e9))
                nextFind += 1
                finds[nextFind] = Find(id: id, cookie: cookie, deadline: deadline, request: request)
                schedulePoll(nextFind)
            case let .withdrawVMotion(key, sequence):
                try records.withdrawVMotion(key, sequence: sequence)
            case .openFeed, .sendBreak:
                break
            }
        } catch {
            let failure = storeFailure(error)
            if case .withdrawVMotion = request {
                logger.warning("cluster: could not withdraw a finished vMotion from the database: \(failure)")
                return
            }
            deliver(.failed(request, failure))
        }
    }

    private func schedulePoll(_ find: Int) {
        timers.asyncAfter(deadline: .now() + pollInterval) { [weak self] in
            guard let self else { return }
            self.queue.async { self.look(find) }
        }
    }

    /// Looks again for one pending find: answers it when found or when its time is up, else polls again.
    private func look(_ number: Int) {
        guard let find = finds[number] else { return }
        do {
            if let shared = try records.findVMotion(cookie: find.cookie, secretLength: ConcentratorStateMachine.secretLength) {
                finds[number] = nil
                return deliver(.vmotionFound(find.id, shared))
            }
        } catch {
            // The database may come back before the deadline: keep looking.
            logger.debug("cluster: looking up a vMotion: \(storeFailure(error))")
        }
        if DispatchTime.now() >= find.deadline {
            finds[number] = nil
            notFound.withLockedValue { $0 += 1 }
            return deliver(.vmotionFound(find.id, nil))
        }
        schedulePoll(number)
    }

    private func noticed(_ notice: ClusterNotice) {
        switch notice {
        case let .owner(key, owner):
            deliver(.owners([key: owner], full: false))
        case let .assignment(key, deleted):
            if deleted { return deliver(.assignments([], removed: [key])) }
            do {
                if let assignment = try records.assignment(key) {
                    deliver(.assignments([assignment], removed: []))
                } else {
                    deliver(.assignments([], removed: [key]))
                }
            } catch {
                logger.warning("cluster: cannot read the assignment of \(key.uuid) \(key.label): \(storeFailure(error))")
            }
        case .vmotion:
            for number in finds.keys.sorted() { look(number) }
        case .reconnected:
            rereadOwners()
            guard let reloadAssignments else { return }
            do {
                deliver(.assignments(try reloadAssignments(), removed: []))
            } catch {
                logger.warning("cluster: cannot re-read the assignments: \(storeFailure(error))")
            }
        }
    }

    private func rereadOwners() {
        do {
            let owners = try records.owners()
            deliver(.owners(owners, full: true))
        } catch {
            logger.warning("cluster: cannot read the consoles' owners: \(storeFailure(error))")
        }
    }

    private func storeFailure(_ error: any Error) -> StoreFailure {
        if let failure = error as? StoreFailure { return failure }
        if let named = failure?(error), named.kind != .other { return named }
        return StoreFailure(.unreachable, "the cluster database cannot be reached: \(error)")
    }
}
