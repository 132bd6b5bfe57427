import Foundation

/// A read the core asks the driver for (`ConcentratorAction.query`): run off the event loop through the
/// read side of the records (`HistoryRecords`), answered by `ConcentratorEvent.queryAnswered`.
public enum RecordQuery: Equatable, Sendable {
    /// The VM serial ports the records know, old names included (`HistoryRecords.knownConsoles`).
    case knownConsoles
    /// A VM's events, oldest first: the newest `limit`, of one label or all, since a time.
    case events(uuid: String, label: String?, since: Date?, limit: Int)
}

/// What a `RecordQuery` found.
public enum RecordAnswer: Equatable, Sendable {
    case knownConsoles([ConsoleCandidate])
    case events([ConsoleEvent])
    /// The records could not be read.
    case failed(StoreFailure)
}
