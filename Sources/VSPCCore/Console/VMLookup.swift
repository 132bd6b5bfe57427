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
