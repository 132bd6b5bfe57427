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
    /// The JSON API's tokens (hashes only), revoked ones included.
    func loadTokens() throws -> [APIToken]
}

/// The event history, for `vspc history`: read offline by `vspc`, or by the daemon for its admin clients.
public protocol HistoryRecords: AnyObject, Sendable {
    /// Events oldest first. With `limit`, the newest `limit` matching events (still oldest first).
    /// `uuid` nil = all VMs; `label` nil = all labels; `since` is inclusive.
    func events(uuid: String?, label: String?, since: Date?, limit: Int?) throws -> [ConsoleEvent]
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
