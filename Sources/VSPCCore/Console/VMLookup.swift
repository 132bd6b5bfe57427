import Foundation

/// Finds the VM a person means by a name, a uuid in any spelling, or a prefix of either. The daemon (`tail`,
/// `forget`, SSH user names) and `vspc` reading the database offline (`history`, `tail`) use this one rule set.
///
/// The first rule that matches anything wins:
/// 1. the exact name (case-sensitive);
/// 2. the full uuid, in any spelling `UUIDSpelling.normalize` reads;
/// 3. the exact name, ignoring case;
/// 4. a prefix of the uuid's hex digits, or (ignoring case) of a name.
/// Several names may belong to one uuid (a VM's old names still find it); results are per uuid.
public enum VMLookup {
    public struct Candidate: Equatable, Sendable {
        /// 32 lowercase hex digits.
        public var uuid: String
        public var name: String
        public init(uuid: String, name: String) {
            self.uuid = uuid
            self.name = name
        }
    }

    public enum Result: Equatable, Sendable {
        case found(uuid: String)
        case notFound
        /// The matching uuids, sorted.
        case ambiguous([String])
    }

    /// The uuids matched by `query` under the first rule that matches any, sorted and without repeats.
    public static func matches(_ query: String, among candidates: [Candidate]) -> [String] {
        let q = String(query.trimmingWhitespace())
        guard !q.isEmpty else { return [] }
        func uuids(_ hits: [Candidate]) -> [String] { Array(Set(hits.map(\.uuid))).sorted() }

        let byName = candidates.filter { !$0.name.isEmpty && $0.name == q }
        if !byName.isEmpty { return uuids(byName) }
        if let uuid = UUIDSpelling.normalize(q) {
            let byUUID = candidates.filter { $0.uuid == uuid }
            if !byUUID.isEmpty { return uuids(byUUID) }
        }
        let lower = q.lowercased()
        let byNameIgnoringCase = candidates.filter { !$0.name.isEmpty && $0.name.lowercased() == lower }
        if !byNameIgnoringCase.isEmpty { return uuids(byNameIgnoringCase) }
        var byPrefix = candidates.filter { !$0.name.isEmpty && $0.name.lowercased().hasPrefix(lower) }
        if let hex = UUIDSpelling.hexPrefix(q), !hex.isEmpty {
            byPrefix += candidates.filter { $0.uuid.hasPrefix(hex) }
        }
        return uuids(byPrefix)
    }

    public static func resolve(_ query: String, among candidates: [Candidate]) -> Result {
        let hits = matches(query, among: candidates)
        switch hits.count {
        case 0: return .notFound
        case 1: return .found(uuid: hits[0])
        default: return .ambiguous(hits)
        }
    }
}

/// A console a person may mean by a name, a uuid or a prefix, with what tells such consoles apart: a VM
/// rebuilt under the same name has a new uuid, and the old one keeps its port until it expires.
public struct ConsoleCandidate: Codable, Equatable, Sendable {
    /// 32 lowercase hex digits.
    public var uuid: String
    public var label: String
    public var name: String
    /// Its port; nil when it holds none (a VM known only from the event log, by an old name say).
    public var port: Int?
    /// A VM connection is attached now.
    public var connected: Bool
    /// When its VM was last seen; nil if never.
    public var lastSeen: Date?

    public init(uuid: String, label: String = "", name: String, port: Int? = nil, connected: Bool = false,
                lastSeen: Date? = nil) {
        self.uuid = uuid
        self.label = label
        self.name = name
        self.port = port
        self.connected = connected
        self.lastSeen = lastSeen
    }
}

/// What a person's reference names, by `VMLookup.choose`.
public enum ConsoleChoice: Equatable, Sendable {
    case found(ConsoleCandidate)
    case notFound
    /// Several, none or more than one of them connected; sorted by name, label, uuid.
    case ambiguous([ConsoleCandidate])
}

extension VMLookup {
    /// What is chosen: one serial port (`tail`, `forget`, SSH), or a VM with all its serial ports (`history`).
    public enum Scope: Sendable {
        case console
        case vm
    }

    /// The one rule, on every door and in every command: `matches` over the names (old ones included) and
    /// uuids of `candidates` with `label` (any label when nil); the hits are merged per console (per VM with
    /// `.vm`). One hit is chosen; of several, the only connected one is; otherwise the reference is ambiguous.
    /// `candidates` may hold several entries of one console (its current name with its port, old names from
    /// the event log): the merged one has the name of an entry with a port (the first such, the unlabelled
    /// port's first), else the most recently seen name; it is connected if any entry is.
    public static func choose(_ query: String, among candidates: [ConsoleCandidate], label: String? = nil,
                              scope: Scope = .console) -> ConsoleChoice {
        let pool = candidates.filter { label == nil || $0.label == label }
        let uuids = Set(matches(query, among: pool.map { Candidate(uuid: $0.uuid, name: $0.name) }))
        var merged: [String: ConsoleCandidate] = [:]
        var order: [String] = []
        for hit in pool where uuids.contains(hit.uuid) {
            let key = scope == .vm ? hit.uuid : "\(hit.uuid)#\(hit.label)"
            guard var current = merged[key] else {
                var first = hit
                if scope == .vm { first.label = "" }
                merged[key] = first
                order.append(key)
                continue
            }
            let better: Bool
            if hit.port != nil, current.port == nil {
                better = true
            } else if hit.port == nil, current.port == nil {
                better = (hit.lastSeen ?? .distantPast) > (current.lastSeen ?? .distantPast)
            } else {
                better = false
            }
            let connected = current.connected || hit.connected
            let seen = max(current.lastSeen ?? .distantPast, hit.lastSeen ?? .distantPast)
            if better {
                current.name = hit.name
                current.port = hit.port
            }
            current.connected = connected
            current.lastSeen = seen == .distantPast ? nil : seen
            merged[key] = current
        }
        let hits = order.compactMap { merged[$0] }
        if hits.isEmpty { return .notFound }
        if hits.count == 1 { return .found(hits[0]) }
        let connected = hits.filter(\.connected)
        if connected.count == 1 { return .found(connected[0]) }
        return .ambiguous(hits.sorted { ($0.name, $0.label, $0.uuid) < ($1.name, $1.label, $1.uuid) })
    }

    /// The refusal of a reference that names no console. When `label` is given and the reference names one VM
    /// without that label, it says so and lists the VM's labels (`(none)` for its first, unlabelled port).
    public static func notFound(_ query: String, among candidates: [ConsoleCandidate], label: String?) -> String {
        if let label, case .found(let vm) = choose(query, among: candidates, scope: .vm) {
            let labels = Set(candidates.filter { $0.uuid == vm.uuid }.map(\.label)).sorted()
                .map { $0.isEmpty ? "(none)" : "\"\(DisplayText.escape($0))\"" }
            return "\"\(DisplayText.escape(query))\" has no serial port labelled \"\(DisplayText.escape(label))\"; its labels: "
                + labels.joined(separator: ", ")
        }
        return "no VM matches \(query.debugDescription)"
    }

    /// The refusal of an ambiguous reference, the same on every door: a first line, then with `listing` (for
    /// those allowed to see them) one line per candidate, `  NAME  UUID  port P  last seen T` (`connected`
    /// in place of the last seen time for a connected one). Names are escaped for display; times are UTC.
    public static func ambiguity(_ query: String, _ candidates: [ConsoleCandidate], listing: Bool = true) -> String {
        let head = "\"\(DisplayText.escape(query))\" is ambiguous; it names several consoles"
        guard listing else { return head + "; use its uuid" }
        var lines = [head + ":"]
        for c in candidates {
            let name = DisplayText.escape(c.label.isEmpty ? c.name : "\(c.name)#\(c.label)")
            let port = c.port.map { "port \($0)" } ?? "no port"
            let seen = c.connected ? "connected" : "last seen \(c.lastSeen.map(AdminProtocol.timestamp) ?? "never")"
            lines.append("  \(name)  \(DisplayText.escape(UUIDSpelling.classic(c.uuid)))  \(port)  \(seen)")
        }
        return lines.joined(separator: "\n")
    }
}
