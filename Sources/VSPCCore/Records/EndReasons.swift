/// Why a VM connection ended: carried by `vm-disconnect` events, and the `reason` label of
/// `vspc_vm_disconnects_total`.
public enum DisconnectReason: String, CaseIterable, Sendable, Codable {
    /// The peer closed the connection (or reset it).
    case closed
    /// vspcd closed it for a protocol violation, or after a read or write error.
    case error
    /// It did not negotiate or identify itself in time.
    case timeout
    /// It left what it was sent unread past `--vm-stuck-timeout`.
    case stuck
    /// A newer connection for the same VM serial port took over.
    case replaced
    /// Closed at once: not on the allow-list, no descriptor or port left, not an ESXi host, or a takeover of a
    /// live console.
    case refused
    /// `vspc forget --force` removed its console.
    case forgotten
    /// A reload of `--proxy-allow` no longer allows its network.
    case disallowed
    /// The source of a completed vMotion, or a destination whose migration ended without it.
    case migrated
    /// The daemon is stopping.
    case shutdown
    /// Several daemons: another node claimed the console (a newer VM connection reached it), so this node's
    /// connection is stale. Its event's detail names the node and its epoch.
    case ownedElsewhere = "owned_elsewhere"

    /// The detail of its `vm-disconnect` event.
    public var detail: String {
        switch self {
        case .closed: return "closed"
        case .error: return "closed by vspcd after an error"
        case .timeout: return "timed out"
        case .stuck: return "stopped reading"
        case .replaced: return "replaced by a new connection"
        case .refused: return "refused"
        case .forgotten: return "forgotten by vspc forget --force"
        case .disallowed: return "no longer in --proxy-allow"
        case .migrated: return "migrated"
        case .shutdown: return "daemon stopping"
        case .ownedElsewhere: return "owned by another node"
        }
    }
}

/// Why vspcd ended or refused a person's connection: carried by `client-dropped` events, and the `reason`
/// label of `vspc_clients_dropped_total`.
public enum DropReason: String, CaseIterable, Sendable, Codable {
    /// It fell behind the console past its bound on a door that disconnects (telnet ports, `tail -f`).
    case slow
    /// Refused: the open-file limit was nearly reached.
    case fdLimit = "fd_limit"
    /// Refused: the console's assignment had expired (a connection to a listener being closed).
    case expired
    /// The console was removed with `vspc forget --force`.
    case forgotten
    /// Its key was removed from authorized_keys, or no longer reaches the console (a reload).
    case revoked
    /// No input and no output for `--ssh-idle-timeout`.
    case idle
    /// Its client left the SSH keepalives unanswered (a dead client).
    case unresponsive
    /// The daemon is stopping.
    case shutdown

    /// The first words of its `client-dropped` event's detail.
    public var detail: String {
        switch self {
        case .slow: return "stopped reading"
        case .fdLimit: return "open-file limit nearly reached"
        case .expired: return "the assignment has expired"
        case .forgotten: return "forgotten by vspc forget --force"
        case .revoked: return "key revoked"
        case .idle: return "idle past --ssh-idle-timeout"
        case .unresponsive: return "did not answer keepalives"
        case .shutdown: return "daemon stopping"
        }
    }
}

/// The typed reason an event carries, where it ends a connection.
public enum EndReason: Equatable, Sendable {
    case disconnect(DisconnectReason)
    case drop(DropReason)
}

/// How connections ended since start-up, counted by the concentrator whether or not each was recorded (the
/// event budgets never hide one from the metrics). The driver reads them when Prometheus scrapes.
public struct EndTallies: Equatable, Sendable {
    /// Connections accepted on the proxy port, refused ones and vMotion destinations included.
    public var vmConnections = 0
    public var vmDisconnects: [DisconnectReason: Int] = [:]
    public var clientsDropped: [DropReason: Int] = [:]
    /// Console lines that matched each watch pattern, rate-limited records or not.
    public var consoleMatches: [String: Int] = [:]
    public init() {}
}
