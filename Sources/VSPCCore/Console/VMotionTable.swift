/// The pending vMotions of every console, each kept once: in its console's `VMotionStateMachine`. A machine is
/// kept only while it has a migration pending, and is indexed by that migration's sequence for the PEER lookup
/// (the sequence is not secret, the VM sends it in the clear; the secret is then compared in constant time).
/// Machines change only through `update` (and `clientInput`, which cannot begin or end a migration), and the
/// index and the count follow from what the machine says after each change: nothing keeps them by hand.
struct VMotionTable {
    typealias Pending = VMotionStateMachine.Pending

    let maxHeldBytes: Int
    private var machines: [ConsoleKey: VMotionStateMachine] = [:]
    private var bySequence: [[UInt8]: Set<ConsoleKey>] = [:]
    /// Generations are unique across consoles and migrations, so a late timer never ends a newer window.
    private var nextGeneration = 1

    init(maxHeldBytes: Int) {
        self.maxHeldBytes = maxHeldBytes
    }

    /// How many consoles have a migration pending.
    var count: Int { machines.count }

    func pending(_ key: ConsoleKey) -> Pending? { machines[key]?.pending }

    func isPending(_ key: ConsoleKey) -> Bool { machines[key] != nil }

    /// The console whose pending migration `cookie` (sequence + secret) names, if any.
    func console(forCookie cookie: [UInt8], secretLength: Int) -> ConsoleKey? {
        let sequence = Array(cookie.dropLast(secretLength))
        return (bySequence[sequence] ?? []).sorted { $0.description < $1.description }
            .first { machines[$0]?.matches(cookie: cookie) == true }
    }

    /// Runs `body` on the console's machine: the one of its pending migration, or an idle one (kept if `body`
    /// begins a migration). Returns what `body` returned, and the migration it ended (as it was before), if any.
    @discardableResult
    mutating func update<T>(_ key: ConsoleKey,
                            _ body: (inout VMotionStateMachine) -> T) -> (result: T, ended: Pending?) {
        // In place: a copy of the machine would copy its hold buffer.
        let changed = machines.modify(key) { machine -> (T, Pending?, [UInt8]?) in
            let before = machine.pending
            let result = body(&machine)
            return (result, before, machine.pending?.sequence)
        }
        if let (result, before, after) = changed {
            if let before, before.sequence != after { unindex(key, before.sequence) }
            if let after, after != before?.sequence { bySequence[after, default: []].insert(key) }
            if after == nil { machines[key] = nil }
            return (result, after == nil ? before : nil)
        }
        var machine = VMotionStateMachine(maxHeldBytes: maxHeldBytes, firstGeneration: nextGeneration)
        let result = body(&machine)
        if let begun = machine.pending {
            nextGeneration = begun.generation + 1
            machines[key] = machine
            bySequence[begun.sequence, default: []].insert(key)
        }
        return (result, nil)
    }

    /// Client input for the console's VM: forwarded, or held while a migration is pending (appended in place).
    mutating func clientInput(_ key: ConsoleKey, _ bytes: [UInt8]) -> VMotionStateMachine.InputDisposition {
        machines.modify(key) { $0.clientInput(bytes) } ?? .forward
    }

    private mutating func unindex(_ key: ConsoleKey, _ sequence: [UInt8]) {
        bySequence[sequence]?.remove(key)
        if bySequence[sequence]?.isEmpty == true { bySequence[sequence] = nil }
    }
}
