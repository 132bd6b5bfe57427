import Foundation
import XCTest
@testable import VSPCCore

/// The time as a test decides it: monotonic nanoseconds and a wall clock that move together, only when told.
struct MockClock {
    /// Far from zero, so instants "before start-up" (a loaded assignment's last_seen) stay positive.
    static let origin: UInt64 = 5_000_000_000_000
    static let originDate = Date(timeIntervalSince1970: 1_700_000_000)

    private(set) var monotonic: UInt64 = MockClock.origin

    var date: Date { Self.originDate.addingTimeInterval(Double(monotonic - Self.origin) / 1e9) }
    var now: Now { Now(monotonic: monotonic, date: date) }

    mutating func move(to instant: UInt64) {
        precondition(instant >= monotonic, "the monotonic clock never goes back")
        monotonic = instant
    }

    static func nanos(_ seconds: Double) -> UInt64 { UInt64((seconds * 1e9).rounded()) }
}

/// How the fake driver answers a `.bind`.
enum BindReply {
    case bound
    case addressInUse
    case failed(String)
    /// Leave it pending; the test answers with `answerBind`.
    case hold
}

/// How the fake store answers a write that carries a token.
enum WriteReply {
    case commit
    case fail(String)
    /// Leave it pending; the test answers with `completeWrite`.
    case hold
}

enum ConnectionKind { case vm, client, admin }

/// A fake driver around `ConcentratorStateMachine`: it feeds events with the mock time, keeps every action,
/// keeps the armed timers as values and fires those that are due when the test advances the clock, answers
/// binds and token writes as the test chooses, and (like the real channels) reports a requested close back
/// as the connection's closed event. Answers are queued and handled after the event that caused them, as the
/// driver does.
final class ConcentratorHarness {
    static let errAddressInUse = "bind(descriptor:ptr:bytes:): Address already in use (errno: 98)"

    private(set) var machine: ConcentratorStateMachine
    private(set) var clock = MockClock()

    var bindReply: (ListenerRef, Int) -> BindReply = { _, _ in .bound }
    var assignmentReply: (ConsoleKey) -> WriteReply = { _ in .commit }
    var scrollbackReply: ([ConsoleKey]) -> WriteReply = { _ in .commit }
    var deletionReply: (ConsoleKey) -> WriteReply = { _ in .commit }
    /// SSH sessions ended, with their exit status.
    private(set) var exitStatuses: [ConnectionID: Int] = [:]
    /// Report each `.close` back as `vmClosed` / `clientClosed` / `adminClosed`.
    var autoClose = true

    /// Every action since the last `take()`, in order (follow-up events included).
    private(set) var actions: [ConcentratorAction] = []
    /// Every `.bind` ever asked for, in order.
    private(set) var binds: [(ref: ListenerRef, port: Int)] = []
    /// The listener each console has now (reported bound, not unbound since).
    private(set) var listeners: [ConsoleKey: (ref: ListenerRef, port: Int)] = [:]
    private(set) var heldBinds: [ListenerRef: Int] = [:]
    private(set) var heldWrites: [WriteToken] = []
    /// Every `.persist`, in order.
    private(set) var persists: [(ops: [StoreOp], token: WriteToken?)] = []
    /// Connections the machine closed, with the flush flag.
    private(set) var closed: [ConnectionID: Bool] = [:]
    private(set) var kinds: [ConnectionID: ConnectionKind] = [:]

    private struct Deadline { var at: UInt64; var order: Int }
    private var armed: [TimerID: Deadline] = [:]
    private var outputs: [ConnectionID: [UInt8]] = [:]
    /// Notices shown apart from the console's bytes (the web door's status line), by connection.
    var notices: [ConnectionID: [String]] = [:]
    /// Tokens made for `url` requests (`token1`, `token2`, ...), and the URL base the driver gives with them.
    var tokensMade = 0
    var tokenBase: String? = "http://vspc.example:8080"
    /// The hash the harness's driver gives for a token (tests need no real SHA-256).
    static func hash(_ token: String) -> String { "hash-" + String(token.reversed()) }
    /// Every console's output as handed to the log files and watch patterns (`keepsOutput`).
    private(set) var consoleOutput: [ConsoleKey: [UInt8]] = [:]
    private var reportedClosed: Set<ConnectionID> = []
    private var followUps: [ConcentratorEvent] = []
    private var nextID: ConnectionID = 1
    private var scheduleOrder = 0

    init(config: ConcentratorConfig = .forTests, seed: UInt64 = 0x5EED, start: Bool = true,
         assignments: [Assignment] = [], scrollback: [ConsoleKey: [UInt8]] = [:], baseline: Int = 8) {
        machine = ConcentratorStateMachine(config: config, random: SplitMix64(seed: seed))
        if start {
            self.start(assignments: assignments, scrollback: scrollback, baseline: baseline)
            take()
        }
    }

    var config: ConcentratorConfig { machine.config }

    /// A console URL's page or WebSocket request, answered in place on the machine (as the driver does).
    func answer<T>(_ body: (inout ConcentratorStateMachine, Now) -> T) -> T { body(&machine, clock.now) }

    @discardableResult
    func start(assignments: [Assignment] = [], scrollback: [ConsoleKey: [UInt8]] = [:],
               baseline: Int = 8) -> [ConcentratorAction] {
        send(.start(assignments: assignments, scrollback: scrollback, descriptorBaseline: baseline))
    }

    // MARK: events

    /// Handles one event, then the driver's answers it caused; returns the actions of that one event.
    @discardableResult
    func send(_ event: ConcentratorEvent) -> [ConcentratorAction] {
        let first = deliver(event)
        while !followUps.isEmpty { deliver(followUps.removeFirst()) }
        return first
    }

    @discardableResult
    private func deliver(_ event: ConcentratorEvent) -> [ConcentratorAction] {
        let result = machine.handle(event, now: clock.now)
        actions.append(contentsOf: result)
        for action in result { carryOut(action) }
        return result
    }

    /// What the machine asked of the cluster, in order (answered by the test with `.cluster(news)`).
    var clusterRequests: [ClusterRequest] = []

    private func carryOut(_ action: ConcentratorAction) {
        switch action {
        case let .send(id, bytes):
            outputs[id, default: []].append(contentsOf: bytes)
        case let .broadcast(ids, bytes):
            for id in ids { outputs[id, default: []].append(contentsOf: bytes) }
        case let .close(id, flush):
            closed[id] = flush
            guard autoClose, let kind = kinds[id], reportedClosed.insert(id).inserted else { return }
            switch kind {
            case .vm: followUps.append(.vmClosed(id))
            case .client: followUps.append(.clientClosed(id))
            case .admin: followUps.append(.adminClosed(id))
            }
        case let .endSession(id, status):
            exitStatuses[id] = status
            carryOut(.close(id, flush: true))
        case .setReading, .closeTransport:
            break
        case let .consoleOutput(key, bytes):
            consoleOutput[key, default: []].append(contentsOf: bytes)
        case let .bind(ref, port):
            binds.append((ref, port))
            answer(ref, port: port, bindReply(ref, port))
        case .unbind(let ref):
            heldBinds[ref] = nil
            if listeners[ref.console]?.ref == ref { listeners[ref.console] = nil }
        case let .schedule(timer, after):
            scheduleOrder += 1
            armed[timer] = Deadline(at: clock.monotonic + after, order: scheduleOrder)
        case .cancel(let timer):
            armed[timer] = nil
        case let .persist(ops, token):
            persists.append((ops, token))
            guard let token else { return }
            let reply: WriteReply
            switch token {
            case .assignment(let key, _): reply = assignmentReply(key)
            case .scrollback(let keys): reply = scrollbackReply(keys)
            case .deletion(let key, _): reply = deletionReply(key)
            }
            switch reply {
            case .commit: followUps.append(.writeCompleted(token, error: nil))
            case .fail(let message): followUps.append(.writeCompleted(token, error: StoreFailure(.other, message)))
            case .hold: heldWrites.append(token)
            }
        case .record, .log, .query:
            break
        case let .notice(id, text):
            notices[id, default: []].append(text)
        case .makeToken(let id, _):
            tokensMade += 1
            let token = "token\(tokensMade)"
            followUps.append(.tokenMade(id, token: token, hash: Self.hash(token), base: tokenBase))
        case .cluster(let request):
            clusterRequests.append(request)
        }
    }

    private func answer(_ ref: ListenerRef, port: Int, _ reply: BindReply) {
        switch reply {
        case .bound:
            listeners[ref.console] = (ref, port)
            followUps.append(.listenerBound(ref))
        case .addressInUse:
            followUps.append(.listenerFailed(ref, addressInUse: true, message: Self.errAddressInUse))
        case .failed(let message):
            followUps.append(.listenerFailed(ref, addressInUse: false, message: message))
        case .hold:
            heldBinds[ref] = port
        }
    }

    /// Answers a bind that was held.
    func answerBind(_ ref: ListenerRef, _ reply: BindReply) {
        guard let port = heldBinds.removeValue(forKey: ref) else { return XCTFail("no held bind for \(ref)") }
        answer(ref, port: port, reply)
        while !followUps.isEmpty { deliver(followUps.removeFirst()) }
    }

    /// Answers a write that was held: committed (nil) or failed.
    @discardableResult
    func completeWrite(_ token: WriteToken, error: String? = nil) -> [ConcentratorAction] {
        guard let index = heldWrites.firstIndex(of: token) else {
            XCTFail("no held write \(token)")
            return []
        }
        heldWrites.remove(at: index)
        return send(.writeCompleted(token, error: error.map { StoreFailure(.other, $0) }))
    }

    // MARK: time

    func isArmed(_ timer: TimerID) -> Bool { armed[timer] != nil }

    /// Nanoseconds until `timer` fires, if armed.
    func remaining(_ timer: TimerID) -> UInt64? { armed[timer].map { $0.at - clock.monotonic } }

    /// Moves the clock forward, firing every timer that falls due on the way, at its own instant, in order.
    func advance(by seconds: Double) {
        let target = clock.monotonic + MockClock.nanos(seconds)
        while let next = armed.filter({ $0.value.at <= target })
            .min(by: { ($0.value.at, $0.value.order) < ($1.value.at, $1.value.order) }) {
            armed[next.key] = nil
            clock.move(to: next.value.at)
            send(.timerFired(next.key))
        }
        clock.move(to: target)
    }

    // MARK: what came out

    /// The actions since the last `take()`, and forgets them.
    @discardableResult
    func take() -> [ConcentratorAction] {
        defer { actions = [] }
        return actions
    }

    /// Everything sent to `id` (on its own or in a broadcast) since the last call, and forgets it.
    func takeOutput(_ id: ConnectionID) -> [UInt8] {
        defer { outputs[id] = nil }
        return outputs[id] ?? []
    }

    /// The events recorded since the last `take()`.
    var records: [ConsoleEvent] { actions.records }

    func newConnection(_ kind: ConnectionKind) -> ConnectionID {
        defer { nextID += 1 }
        kinds[nextID] = kind
        return nextID
    }
}

extension ConcentratorConfig {
    /// Small, round numbers: ten ports, expiry after an hour (swept every minute).
    static var forTests: ConcentratorConfig {
        var c = ConcentratorConfig()
        c.portRange = 20000...20009
        c.vmExpireTime = 3600
        c.vmotionTimeout = 30
        c.negotiationTimeout = 10
        c.nameTimeout = 5
        c.scrollbackSaveInterval = 2
        c.retryInterval = 30
        c.pruneDelay = 5
        c.pruneInterval = 3600
        return c
    }
}

extension Array where Element == ConcentratorAction {
    var records: [ConsoleEvent] { compactMap { if case .record(let e) = $0 { return e }; return nil } }
    var recordKinds: [EventKind] { records.map(\.kind) }
    var nonLog: [ConcentratorAction] { filter { if case .log = $0 { return false }; return true } }
    /// Only what reaches connections: sends, broadcasts and closes.
    var io: [ConcentratorAction] {
        filter {
            switch $0 {
            case .send, .broadcast, .close: return true
            default: return false
            }
        }
    }
    var logs: [(level: LogLevel, message: String)] {
        compactMap { if case let .log(level, message) = $0 { return (level, message) }; return nil }
    }
    var persistedOps: [StoreOp] { flatMap { if case .persist(let ops, _) = $0 { return ops }; return [] } }
    /// Without the periodic housekeeping (scrollback-save and prune timers, prune writes), which ticks regardless.
    var withoutHousekeeping: [ConcentratorAction] {
        filter {
            switch $0 {
            case .schedule(.scrollbackSave, _), .schedule(.prune, _): return false
            case .persist(let ops, nil) where ops.allSatisfy({ if case .prune = $0 { return true }; return false }):
                return false
            default: return true
            }
        }
    }
}
