import Foundation

/// A `history` request in progress: the VM is resolved against what the records know (old names, VMs that
/// hold no port any more) and what is live, then its events are read; both reads run off the event loop.
struct PendingHistory: Equatable {
    var query: String
    var label: String?
    var since: Date?
    var limit: Int
    /// The VM, once resolved.
    var target: ConsoleCandidate?
}

extension ConcentratorStateMachine {
    mutating func history(_ id: ConnectionID, _ request: PendingHistory) {
        guard admins[id] != nil else { return }
        admins[id]?.history = request
        emit(.query(id, .knownConsoles))
    }

    mutating func queryAnswered(_ id: ConnectionID, _ answer: RecordAnswer) {
        guard let admin = admins[id], !admin.answered, let pending = admin.history else { return }
        switch answer {
        case .failed(let failure):
            respond(id, AdminResponse(ok: false, error: "cannot read the history: \(failure.message)"), thenClose: true)
        case .knownConsoles(let stored):
            switch VMLookup.choose(pending.query, among: historyCandidates(stored), label: pending.label, scope: .vm) {
            case .notFound:
                respond(id, AdminResponse(ok: false, error: "no VM matches \(pending.query.debugDescription)"), thenClose: true)
            case .ambiguous(let candidates):
                respond(id, AdminResponse(ok: false, error: VMLookup.ambiguity(pending.query, candidates),
                                          candidates: candidates), thenClose: true)
            case .found(let target):
                admins[id]?.history?.target = target
                emit(.query(id, .events(uuid: target.uuid, label: pending.label, since: pending.since, limit: pending.limit)))
            }
        case .events(let events):
            guard let target = pending.target else { return }
            admins[id]?.history = nil
            let answer = HistoryAnswer(uuid: target.uuid, name: target.name, events: Array(events.suffix(pending.limit)))
            respond(id, AdminResponse(ok: true, history: answer), thenClose: true)
        }
    }

    /// What the records know, with the live consoles in place of their stored assignments: their current
    /// name and port, whether a VM is connected, and when it was last seen.
    func historyCandidates(_ stored: [ConsoleCandidate]) -> [ConsoleCandidate] {
        let live = liveCandidates()
        let liveKeys = Set(live.map { ConsoleKey(uuid: $0.uuid, label: $0.label) })
        return live + stored.filter { $0.port == nil || !liveKeys.contains(ConsoleKey(uuid: $0.uuid, label: $0.label)) }
    }

    /// The listed consoles as lookup candidates.
    func liveCandidates(label: String? = nil) -> [ConsoleCandidate] {
        consoles.values.filter { $0.listed && (label == nil || $0.key.label == label) }
            .sorted { $0.key.description < $1.key.description }
            .map { ConsoleCandidate(uuid: $0.key.uuid, label: $0.key.label, name: $0.name, port: $0.port,
                                    connected: $0.vm != nil, lastSeen: $0.vm != nil ? now.date : $0.since) }
    }
}
