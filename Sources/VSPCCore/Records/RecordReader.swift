import Foundation

/// The read side of the records, as the core sees it. `VSPCStore` opens a backend from the `--db` value
/// (`RecordBackends`); `vspcd` and `vspc` use only these protocols, so another backend plugs in beside
/// SQLite without touching them.

/// What the daemon reads at start-up: the port assignments, and the scrollback saved before it stopped.
public protocol StartupRecords: AnyObject, Sendable {
    /// All assignments, ordered by name, label, uuid.
    func loadAssignments() throws -> [Assignment]
    /// Every console's saved scrollback.
    func allScrollback() throws -> [(uuid: String, label: String, data: [UInt8])]
}

/// The event history, for `vspc history`: read offline by `vspc`, or by the daemon for its admin clients.
public protocol HistoryRecords: AnyObject, Sendable {
    /// Events oldest first. With `limit`, the newest `limit` matching events (still oldest first).
    /// `uuid` nil = all VMs; `label` nil = all labels; `since` is inclusive.
    func events(uuid: String?, label: String?, since: Date?, limit: Int?) throws -> [EventRecord]
    /// The VMs the records know, for `VMLookup`: the assignments, and the (uuid, name) pairs of the event log,
    /// so a VM's old names still find it. `names` gives each uuid's display name: its current assignment's
    /// name, else the name of its most recent event.
    func lookupCandidates() throws -> (candidates: [VMLookup.Candidate], names: [String: String])
    /// The VM serial ports the records know, for `VMLookup.choose`: each assignment (with its port and when its
    /// VM was last seen), and each (uuid, label, name) of the event log (no port; seen at its latest event),
    /// so a VM's old names and VMs that hold no port any more are still found. None is connected.
    func knownConsoles() throws -> [ConsoleCandidate]
}

/// Saved console scrollback, for `vspc tail` while the daemon is down.
public protocol ScrollbackRecords: AnyObject, Sendable {
    /// The scrollback saved for one VM serial port; nil if none.
    func scrollback(uuid: String, label: String) throws -> [UInt8]?
}

/// Everything a backend can read.
public typealias RecordReader = StartupRecords & HistoryRecords & ScrollbackRecords

/// A backend the daemon runs on: it writes (queued) and reads.
public typealias RecordBackend = RecordStore & RecordReader

extension HistoryRecords {
    /// Resolves a person's VM reference (for `vspc history` and `tail`) by `VMLookup`'s rules. Results are one
    /// entry per uuid with its display name, sorted by name, uuid: none = unknown, several = ambiguous.
    public func resolveVM(_ query: String) throws -> [(uuid: String, name: String)] {
        let (candidates, names) = try lookupCandidates()
        return VMLookup.matches(query, among: candidates).map { (uuid: $0, name: names[$0] ?? "") }
            .sorted { ($0.name, $0.uuid) < ($1.name, $1.uuid) }
    }
}
