import Foundation

/// The proxy port against a network stranger: refusals logged within bounds, connections that never identify
/// bounded per address and in all, and new port assignments bounded per address with a reserve of the pool.
extension ConcentratorStateMachine {
    /// Closes a proxy connection before any negotiation; logged at most once a minute per address, and a bounded
    /// number of addresses a minute, with a count of the rest.
    mutating func refuseVM(_ id: ConnectionID, peer: String, address: IPAddress?, why: String) {
        let decision = refusalLog.refusal(from: address, now: monotonicNow)
        if decision.suppressedBefore > 0 {
            log(.warning, "… \(grouped(decision.suppressedBefore)) more refused proxy connections in the last minute")
        }
        if decision.log {
            log(.warning, "refused proxy connection from \(peer): \(why)")
        } else {
            eventsSuppressed += 1
        }
        tallies.vmDisconnects[.refused, default: 0] += 1
        emit(.close(id, flush: false))
    }

    /// Why a new assignment from `address` is refused, if it is: the address made `newAssignmentsPerMinute`
    /// this minute, or only the pool's reserve is left and the address has carried no console since start-up.
    mutating func refuseNewAssignment(from address: IPAddress?) -> String? {
        guard let address else { return nil }
        if assignmentMinute == .min || monotonicNow - assignmentMinute >= 60_000_000_000 {
            assignmentsThisMinute = [:]
            assignmentMinute = monotonicNow
        }
        let made = assignmentsThisMinute[address, default: 0]
        if made >= config.newAssignmentsPerMinute {
            return "\(made) new port assignments from this address in the last minute (the limit)"
        }
        let reserve = Int(Double(config.portRange.count) * config.portReserveFraction)
        if !knownAddresses.contains(address), pool.available > 0, pool.available <= reserve {
            return "only \(pool.available) ports are left, kept for hosts that already carry consoles"
        }
        assignmentsThisMinute[address] = made + 1
        return nil
    }

    /// Why a new connection from `address` is refused, if it is: too many connections (from it, or in all) have
    /// stayed unidentified past the grace. Only counted when over the limit, so a burst of fresh connections
    /// costs nothing.
    func tooManyUnidentified(from address: IPAddress) -> String? {
        let grace = Int64(nanos(config.identifyGrace))
        func stale(_ connections: [ConnectionID: Int64]) -> Int {
            connections.values.reduce(0) { $0 + (monotonicNow - $1 > grace ? 1 : 0) }
        }
        if let mine = unidentifiedByAddress[address], mine.count >= config.maxUnidentifiedPerAddress,
           stale(mine) >= config.maxUnidentifiedPerAddress {
            return "\(config.maxUnidentifiedPerAddress) connections from this address have not identified themselves (the limit)"
        }
        if unidentifiedTotal >= config.maxUnidentified,
           unidentifiedByAddress.values.reduce(0, { $0 + stale($1) }) >= config.maxUnidentified {
            return "\(config.maxUnidentified) proxy connections have not identified themselves (the limit)"
        }
        return nil
    }

    /// The connection carries or claims a console now, or is gone: it no longer counts as unidentified.
    mutating func leftUnidentified(_ id: ConnectionID) {
        guard let vm = vms[id], vm.unidentified, let address = vm.address else { return }
        vms[id]?.unidentified = false
        unidentifiedTotal -= 1
        unidentifiedByAddress[address]?[id] = nil
        if unidentifiedByAddress[address]?.isEmpty == true { unidentifiedByAddress[address] = nil }
    }
}
