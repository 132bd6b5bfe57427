/// What the daemon is doing right now, read on the event loop when Prometheus scrapes.
/// The gauges `vspc_vms_connected`, `vspc_consoles`, `vspc_clients{door}`, `vspc_ports_free` and
/// `vspc_vmotions_in_progress` are set from it.
public struct MetricsSnapshot: Sendable, Equatable {
    public var vmsConnected: Int
    public var consoles: Int
    /// Attached people by door (`telnet`, `ssh`, `tail`; see `ClientDoor`). Other keys are ignored, so a
    /// typo cannot create a series; a missing door reads 0.
    public var clientsByDoor: [String: Int]
    public var portsFree: Int
    public var vmotionsInProgress: Int

    public init(
        vmsConnected: Int = 0,
        consoles: Int = 0,
        clientsByDoor: [String: Int] = [:],
        portsFree: Int = 0,
        vmotionsInProgress: Int = 0
    ) {
        self.vmsConnected = vmsConnected
        self.consoles = consoles
        self.clientsByDoor = clientsByDoor
        self.portsFree = portsFree
        self.vmotionsInProgress = vmotionsInProgress
    }
}

/// How a person reaches a console: the `door` label of `vspc_clients`.
public enum ClientDoor: String, CaseIterable, Sendable {
    case telnet
    case ssh
    case tail
}

/// Why a VM connection ended: the `reason` label of `vspc_vm_disconnects_total`.
public enum DisconnectReason: String, CaseIterable, Sendable {
    /// The peer closed the connection (or reset it).
    case closed
    /// A read or write error, or a protocol violation that made vspcd close it.
    case error
    /// It never identified itself (negotiation or name timeout).
    case timeout
    /// Its output stayed stuck past the bound (it stopped reading).
    case stuck
    /// A newer connection for the same VM serial port took over.
    case replaced
    /// Closed at once: not on the allow-list, no descriptor or port left, or a takeover of a live console.
    case refused
    /// The daemon is stopping.
    case shutdown
}

/// How a vMotion ended: the `result` label of `vspc_vmotions_total`.
public enum VMotionResult: String, CaseIterable, Sendable {
    /// VMOTION-COMPLETE moved the console to the destination.
    case complete
    /// The source sent VMOTION-ABORT.
    case abort
    /// VMOTION-BEGIN was answered with NOTNOW.
    case notnow
    /// No VMOTION-COMPLETE before `--vmotion-timeout` (or the source closed and no destination came).
    case timeout
    /// A PEER or COMPLETE with a wrong or replayed cookie was rejected.
    case rejected
}

/// Why a person's connection was dropped or refused: the `reason` label of `vspc_clients_dropped_total`.
public enum ClientDropReason: String, CaseIterable, Sendable {
    /// It stopped reading and its queue passed the bound.
    case slow
    /// Refused: the open-file limit was nearly reached.
    case fdLimit = "fd_limit"
    /// Refused: the console's assignment had expired.
    case expired
    /// The console was removed with `vspc forget`.
    case forgotten
    /// The daemon is stopping.
    case shutdown
}
