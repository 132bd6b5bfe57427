import NIOCore
import NIOSSL
import VSPCCore

/// Everything the daemon can be told. Defaults are the safe ones: per-VM ports and the admin endpoint on
/// loopback, the proxy on all interfaces, per-VM ports outside Linux's ephemeral range (32768-60999).
public struct DaemonConfig: Sendable {
    public var proxyHost = "0.0.0.0"
    public var proxyPort = 6779
    public var adminHost = "127.0.0.1"
    public var adminPort = 6780
    public var listenHost = "127.0.0.1"
    public var portRangeStart = 20000
    public var portRangeEnd = 32767
    /// Seconds without VM and without client after which an assignment expires and its port returns to the pool.
    public var vmExpireTime: Double = 86400
    public var serviceURI = "vSPC.py"
    public var tls: NIOSSLContext?
    /// Seconds a pending vMotion waits for its destination's COMPLETE.
    public var vmotionTimeout: Double = 30
    /// Seconds a new proxy connection has to agree to the VMware extension.
    public var negotiationTimeout: Double = 10
    /// Seconds a VM that gave its uuid has to give its name.
    public var nameTimeout: Double = 5
    /// Bytes queued to one reader on a byte-exact door (telnet ports, tail -f) before it is dropped.
    public var clientBufferLimit = 1 << 20
    /// Bytes held for one reader on a skip-ahead door (SSH) before its oldest unsent bytes are skipped.
    public var skipBacklog = 1 << 20
    /// Bytes queued to one VM (client input) before further input is discarded.
    public var vmBufferLimit = 4 << 20
    /// Client input held during a vMotion window, per console.
    public var vmotionHoldLimit = 256 * 1024
    /// Scrollback kept per console, in bytes; 0 turns scrollback off.
    public var scrollbackBytes = 64 * 1024
    /// Bytes of scrollback sent to a telnet client when it attaches; 0 = none.
    public var replayBytes = 0
    /// Seconds between scrollback saves to the database.
    public var scrollbackSaveInterval: Double = 2
    /// Event retention.
    public var retention = Retention(maxAge: 90 * 86400, maxCount: 1_000_000)
    /// Highest number of descriptors the daemon may use (its RLIMIT_NOFILE); new VMs and clients are refused
    /// when fewer than `descriptorReserve` remain.
    public var descriptorLimit = 1024
    public var descriptorReserve = 64
    /// Where ESXi hosts may connect from (empty: anywhere).
    public var proxyAllow = AddressAllowList()
    /// Seconds a VM connection may leave what it is sent unread before it is closed.
    public var vmStuckTimeout: Double = 60
    /// Seconds a console's open connection has to answer the probe when another connection claims the console.
    public var takeoverProbeTimeout: Double = 5
    /// `--admin unix:PATH`: the admin endpoint on a Unix socket (created 0660) instead of TCP.
    public var adminUnixPath: String?
    /// `--ssh`: the SSH front door (off when nil), its host key and its authorized keys.
    public var ssh: Endpoint?
    public var sshHostKeyPath = "ssh_host_ed25519_key"
    public var sshAuthorizedKeysPath = "authorized_keys"
    /// `--telnet-ports`.
    public var telnetPorts = TelnetPortsMode.readWrite
    /// `--metrics`: where Prometheus scrapes `/metrics` (off when nil).
    public var metrics: Endpoint?
    /// The daemon's version, for `vspc status`.
    public var version = "dev"

    public init() {}

    public var portRange: ClosedRange<Int> { portRangeStart...portRangeEnd }

    /// The part of the configuration the concentrator's decisions depend on.
    public var concentrator: ConcentratorConfig {
        var c = ConcentratorConfig()
        c.listenHost = listenHost
        c.portRange = portRange
        c.vmExpireTime = vmExpireTime
        c.serviceURI = serviceURI
        c.vmotionTimeout = vmotionTimeout
        c.negotiationTimeout = negotiationTimeout
        c.nameTimeout = nameTimeout
        c.vmotionHoldLimit = vmotionHoldLimit
        c.scrollbackBytes = scrollbackBytes
        c.replayBytes = replayBytes
        c.scrollbackSaveInterval = scrollbackSaveInterval
        c.retention = retention
        c.descriptorLimit = descriptorLimit
        c.descriptorReserve = descriptorReserve
        c.proxyAllow = proxyAllow
        c.vmStuckTimeout = vmStuckTimeout
        c.takeoverProbeTimeout = takeoverProbeTimeout
        c.version = version
        c.telnetPorts = telnetPorts
        return c
    }

    /// A person's connection is dropped once more than `clientBufferLimit` waits for it (plus the one-off replay).
    var clientWaterMark: ChannelOptions.Types.WriteBufferWaterMark {
        let high = clientBufferLimit + replayBytes
        return .init(low: high / 2, high: high)
    }

    /// Input for a VM is discarded while more than `vmBufferLimit` waits for it.
    var vmWaterMark: ChannelOptions.Types.WriteBufferWaterMark {
        .init(low: vmBufferLimit / 2, high: vmBufferLimit)
    }

    /// A tail follower is dropped once more than `clientBufferLimit` of live output waits (after its backlog).
    var adminWaterMark: ChannelOptions.Types.WriteBufferWaterMark {
        let high = clientBufferLimit + scrollbackBytes + 64 * 1024
        return .init(low: high / 2, high: high)
    }
}
