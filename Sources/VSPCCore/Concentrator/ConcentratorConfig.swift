import Foundation

/// What the concentrator's decisions depend on. Pure values; the driver's network settings live elsewhere.
public struct ConcentratorConfig: Sendable {
    /// Where the per-VM ports listen (for messages only; the driver binds).
    public var listenHost = "127.0.0.1"
    public var portRange: ClosedRange<Int> = 20000...32767
    /// Seconds without VM and without client after which an assignment expires and its port returns to the pool.
    public var vmExpireTime: Double = 86400
    public var serviceURI = "vSPC.py"
    /// Seconds a pending vMotion waits for its destination's COMPLETE.
    public var vmotionTimeout: Double = 30
    /// Seconds a new proxy connection has to agree to the VMware extension (and six times that to identify).
    public var negotiationTimeout: Double = 10
    /// Seconds a VM that gave its uuid has to give its name.
    public var nameTimeout: Double = 5
    /// Seconds a new proxy connection has to identify itself (a uuid and name, or an accepted VMOTION-PEER) before
    /// it is closed. ESXi does it in under 5 ms (the reference capture: SYN to VM-NAME in 4.6 ms); longer than
    /// `negotiationTimeout`, which only decides whether the peer speaks VMware's extension.
    public var identifyTimeout: Double = 15
    /// Proxy connections left unidentified past `identifyGrace`, in all and from one address: while there are
    /// this many, new ones are refused at once, so half-open connections cannot take the descriptors real VMs
    /// need. Connections younger than the grace never count: a host booting hundreds of VMs at once opens one
    /// connection per serial port, and each identifies in milliseconds.
    public var maxUnidentified = 256
    public var maxUnidentifiedPerAddress = 64
    public var identifyGrace: Double = 1
    /// New port assignments one address may cause per minute (a host has at most 1,024 VMs); and the share of
    /// the pool kept for addresses that already own assignments, so a stranger's first port never comes from it.
    public var newAssignmentsPerMinute = 600
    public var portReserveFraction = 0.1
    /// Client input held during a vMotion window, per console.
    public var vmotionHoldLimit = 256 * 1024
    /// VM output kept while a connection does not carry a console yet (before identification or COMPLETE).
    public var earlyOutputLimit = 256 * 1024
    /// Scrollback kept per console, in bytes; 0 turns scrollback off.
    public var scrollbackBytes = 64 * 1024
    /// Bytes of scrollback sent to a telnet client when it attaches; 0 = none.
    public var replayBytes = 0
    /// Seconds between scrollback saves to the database.
    public var scrollbackSaveInterval: Double = 2
    /// Seconds before a port that could not be bound, or an assignment that could not be written, is retried.
    public var retryInterval: Double = 30
    /// Event retention, pruned `pruneDelay` seconds after start and then every `pruneInterval` seconds.
    public var retention = Retention(maxAge: 90 * 86400, maxCount: 1_000_000)
    public var pruneDelay: Double = 5
    public var pruneInterval: Double = 3600
    /// Highest number of descriptors the daemon may use; new VMs are refused when fewer than `descriptorReserve`
    /// remain, people and the admin tool when fewer than a quarter of it remain.
    public var descriptorLimit = 1024
    public var descriptorReserve = 64
    /// `--proxy-allow`: where ESXi hosts may connect from (empty: anywhere).
    public var proxyAllow = AddressAllowList()
    /// Seconds a VM connection may leave what it is sent unread (above its water mark) before it is closed.
    public var vmStuckTimeout: Double = 60
    /// Seconds the open connection of a console has to answer a liveness probe before a newcomer with the same
    /// uuid and label takes the console over.
    public var takeoverProbeTimeout: Double = 5
    /// Events and log lines one VM connection may cause per minute; the rest are counted and summarised.
    public var eventsPerConnectionPerMinute = 20
    /// Consoles' output goes out as `consoleOutput` actions too, for the console log files and watch patterns.
    public var keepsOutput = false
    /// `console-match` records one console may cause per minute; the rest are counted and summarised.
    public var matchesPerConsolePerMinute = 10
    /// A matched line is recorded cut at this many bytes, escaped.
    public var matchLineLimit = 200

    /// `--telnet-ports`.
    public var telnetPorts = TelnetPortsMode.readWrite
    /// The zone of the times people read on the doors (the escape menu's `w`): the daemon sets its own; the core
    /// never reads the system's.
    public var timeZone = TimeZone(identifier: "UTC") ?? TimeZone(secondsFromGMT: 0)!
    /// Several daemons sharing PostgreSQL: this node's part (nil: one daemon alone, SQLite or PostgreSQL).
    public var cluster: ClusterConfig?
    /// This daemon's version, for `vspc status`.
    public var version = "dev"

    public init() {}

    /// The defaults, written once: the daemon's settings and configuration take theirs from here.
    public static let defaults = ConcentratorConfig()

    /// How often idle consoles are looked for: a quarter of the expiry time, between 50 ms and a minute.
    public var expirySweepInterval: Double { Self.sweep(vmExpireTime) }

    static func sweep(_ expire: Double) -> Double { max(0.05, min(60, expire / 4)) }
}

/// Seconds to nanoseconds for timers, saturating.
@inline(__always)
func nanos(_ seconds: Double) -> UInt64 {
    seconds <= 0 ? 0 : (seconds >= 1e10 ? UInt64(1e19) : UInt64(seconds * 1e9))
}
