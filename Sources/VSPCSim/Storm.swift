import Foundation
import NIOCore
import NIOPosix
import VSPCCore

/// A concentrator's proxy address, `host:port`.
public struct ProxyAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port` (IPv4 or a name; the port after the last colon).
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        let host = String(text[..<colon])
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    public var description: String { "\(host):\(port)" }
}

/// One VM of a storm: its current connection, which concentrator carries it, and every byte it printed.
public final class StormVM: @unchecked Sendable {
    public let index: Int
    public let uuid: String
    public let name: String
    private let lock = NSLock()
    private var current: SimulatedVM?
    private var hostIndex: Int
    private var printedBytes: [UInt8] = []
    private var lines = 0
    private var moves = 0

    init(index: Int, uuid: String, name: String, hostIndex: Int) {
        self.index = index
        self.uuid = uuid
        self.name = name
        self.hostIndex = hostIndex
    }

    /// The connection that carries the console now (nil before connecting or once lost).
    public var connection: SimulatedVM? {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }

    /// The index (in the storm's hosts) of the concentrator the VM is connected to.
    public var host: Int {
        get { lock.withLock { hostIndex } }
        set { lock.withLock { hostIndex = newValue } }
    }

    /// The vMotions this VM completed.
    public var completed: Int { lock.withLock { moves } }

    func didMigrate() { lock.withLock { moves += 1 } }

    /// Everything printed on the VM's serial port, in order, whichever connection carried it.
    public var printed: [UInt8] { lock.withLock { printedBytes } }

    /// Prints the next line of the VM's sequence (`NAME seq N` and `note`) on `connection` (default: the current).
    public func printNext(_ note: String = "", on connection: SimulatedVM? = nil) {
        lock.lock()
        guard let vm = connection ?? current else { lock.unlock(); return }
        lines += 1
        let line = Array("\(name) seq \(lines)\(note.isEmpty ? "" : " " + note)\r\n".utf8)
        printedBytes += line
        // Under the lock: two lines never reach the socket out of the order they are recorded in.
        vm.output(line)
        lock.unlock()
    }
}

/// What a storm measured.
public struct StormStats: Sendable {
    public var migrations = 0
    /// vMotions that failed, NOTNOW answers included.
    public var failed = 0
    /// Of those, BEGINs answered with NOTNOW (the VM stays; it tries again a little later, as ESXi would).
    public var notNow = 0
    public var seconds: Double = 0
    /// Durations (BEGIN sent to COMPLETE sent) of the vMotions between two concentrators, and of those to the same.
    public var crossNode: [Double] = []
    public var local: [Double] = []
    /// The first few failures, for the report.
    public var failures: [String] = []

    public var rate: Double { seconds > 0 ? Double(migrations) / seconds : 0 }

    /// The `p` quantile (0...1) of `values`, nil when empty.
    public static func quantile(_ values: [Double], _ p: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let index = min(sorted.count - 1, max(0, Int((p * Double(sorted.count - 1)).rounded())))
        return sorted[index]
    }

    mutating func merge(_ other: StormStats) {
        migrations += other.migrations
        failed += other.failed
        notNow += other.notNow
        crossNode += other.crossNode
        local += other.local
        failures += other.failures.prefix(max(0, 10 - failures.count))
    }
}

/// VMs spread over one or more concentrators (VM i on host i mod n) that migrate, each in turn to the next host,
/// at a given total rate, every VM printing a numbered line before each vMotion and one inside its window.
public final class VMotionStorm: @unchecked Sendable {
    public let hosts: [ProxyAddress]
    public let vms: [StormVM]
    let group: EventLoopGroup
    /// Seconds one step of a vMotion may take before it counts as failed.
    public var stepTimeout: Double = 10

    public init(hosts: [ProxyAddress], count: Int, name: String, uuidKey: String? = nil,
                group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        precondition(!hosts.isEmpty)
        self.hosts = hosts
        self.group = group
        let key = uuidKey ?? name
        vms = (0..<count).map {
            StormVM(index: $0, uuid: SimFleet.uuid(key: key, index: $0), name: "\(name)-\($0)", hostIndex: $0 % hosts.count)
        }
    }

    /// Connects VM `vm` (fresh, DO-PROXY) to host `index` and waits until it is identified.
    public func connect(_ vm: StormVM, to index: Int) async throws {
        let address = hosts[index]
        let connection = try await SimulatedVM.connect(host: address.host, port: address.port, uuid: vm.uuid,
                                                       name: vm.name, group: group)
        try await connection.wait("the name request of \(vm.name)", timeout: stepTimeout) {
            connection.closed || connection.messages.contains { $0.first == VMwareCommand.getVMName }
        }
        guard !connection.closed else { throw SimError("\(address) closed \(vm.name)'s connection after identifying") }
        vm.connection = connection
        vm.host = index
    }

    /// Connects every VM to its host, `concurrency` at a time; returns the seconds it took.
    @discardableResult
    public func connectAll(concurrency: Int = 32) async throws -> Double {
        let start = Date()
        try await forEach(vms, concurrency: concurrency) { vm in try await self.connect(vm, to: vm.host) }
        return Date().timeIntervalSince(start)
    }

    /// Runs `body` for each element, at most `concurrency` at once.
    func forEach<T: Sendable>(_ items: [T], concurrency: Int, _ body: @escaping @Sendable (T) async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var iterator = items.makeIterator()
            for _ in 0..<max(1, concurrency) {
                guard let item = iterator.next() else { break }
                group.addTask { try await body(item) }
            }
            while try await group.next() != nil {
                if let item = iterator.next() { group.addTask { try await body(item) } }
            }
        }
    }

    /// Migrates VMs to their next host, `rate` vMotions a second in all, for `seconds` or until `shouldStop`
    /// returns true. Before each vMotion the VM prints a line, and one more inside the window (on the source).
    /// A failed vMotion whose source is still open is aborted and the VM stays; a VM whose connection closed stops.
    public func run(seconds: Double, rate: Double, shouldStop: @escaping @Sendable () -> Bool = { false }) async -> StormStats {
        let start = Date()
        let end = start.addingTimeInterval(seconds)
        let tickets = TicketCounter()
        let perVM = await withTaskGroup(of: StormStats.self) { group in
            for vm in vms {
                group.addTask {
                    await self.loop(vm, start: start, end: end, rate: rate, tickets: tickets, shouldStop: shouldStop)
                }
            }
            var all = StormStats()
            for await stats in group { all.merge(stats) }
            return all
        }
        var stats = perVM
        stats.seconds = Date().timeIntervalSince(start)
        return stats
    }

    private func loop(_ vm: StormVM, start: Date, end: Date, rate: Double, tickets: TicketCounter,
                      shouldStop: @Sendable () -> Bool) async -> StormStats {
        var stats = StormStats()
        while !shouldStop() {
            let due = start.addingTimeInterval(Double(tickets.take()) / max(rate, 0.001))
            guard due < end else { break }
            let wait = due.timeIntervalSinceNow
            if wait > 0 { try? await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
            if shouldStop() { break }
            guard let source = vm.connection, !source.closed else { break }
            let from = vm.host
            let to = (from + 1) % hosts.count
            vm.printNext()
            let began = Date()
            do {
                let destination = try await source.migrate(to: hosts[to].host, port: hosts[to].port, group: group,
                                                           timeout: stepTimeout) { source, _ in
                    vm.printNext("in window", on: source)
                }
                let took = Date().timeIntervalSince(began)
                if from == to { stats.local.append(took) } else { stats.crossNode.append(took) }
                stats.migrations += 1
                vm.connection = destination
                vm.host = to
                vm.didMigrate()
            } catch {
                stats.failed += 1
                if stats.failures.count < 10 { stats.failures.append("\(vm.name) \(hosts[from]) -> \(hosts[to]): \(error)") }
                if source.closed {
                    vm.connection = nil
                    break
                }
                if "\(error)".contains(Self.notNowText) {
                    stats.notNow += 1
                    try? await Task.sleep(nanoseconds: 50_000_000)
                } else {
                    source.abortVMotion()
                }
            }
        }
        return stats
    }

    /// What `SimulatedVM.migrate` throws for a NOTNOW.
    static let notNowText = "VMOTION-NOTNOW"

    public func closeAll() {
        for vm in vms { vm.connection?.close() }
    }

    /// One line: the counts, the rate, the windows.
    public static func describe(_ stats: StormStats) -> String {
        func ms(_ v: Double?) -> String { v.map { String(format: "%.1f", $0 * 1000) } ?? "-" }
        return String(format: "vmotion: %d in %.1f s (%.1f/s), failed %d (NOTNOW %d); ", stats.migrations, stats.seconds,
                      stats.rate, stats.failed, stats.notNow)
            + "cross-node window median \(ms(StormStats.quantile(stats.crossNode, 0.5))) ms p99 \(ms(StormStats.quantile(stats.crossNode, 0.99))) ms (\(stats.crossNode.count)); "
            + "local window median \(ms(StormStats.quantile(stats.local, 0.5))) ms p99 \(ms(StormStats.quantile(stats.local, 0.99))) ms (\(stats.local.count))"
    }
}

/// Hands out 0, 1, 2 ... to the VMs of a storm: ticket k is due k/rate seconds after the start.
final class TicketCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0

    func take() -> Int {
        lock.withLock {
            defer { next += 1 }
            return next
        }
    }
}
