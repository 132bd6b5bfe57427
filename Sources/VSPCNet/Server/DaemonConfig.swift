import NIOCore
import NIOSSL
import VSPCCore

/// Everything the daemon can be told. Defaults are the safe ones: per-VM ports and the admin endpoint on
/// loopback, the proxy on all interfaces, per-VM ports outside Linux's ephemeral range (32768-60999).
public struct DaemonConfig: Sendable {
    /// What the concentrator's decisions depend on, with its defaults: each default is written once, there
    /// (`ConcentratorConfig`), and the settings below that the machine shares read and write it.
    public var concentrator = ConcentratorConfig()

    public var proxyHost = "0.0.0.0"
    public var proxyPort = 6779
    public var adminHost = "127.0.0.1"
    public var adminPort = 6780
    public var tls: NIOSSLContext?
    /// Bytes queued to one reader on a byte-exact door (telnet ports, tail -f) before it is dropped.
    public var clientBufferLimit = Door.defaultBacklog
    /// Bytes held for one reader on a skip-ahead door (SSH) before its oldest unsent bytes are skipped.
    public var skipBacklog = Door.defaultBacklog
    /// Bytes queued to one VM (client input) before further input is discarded.
    public var vmBufferLimit = 4 << 20
    /// `--admin unix:PATH`: the admin endpoint on a Unix socket (created 0660) instead of TCP.
    public var adminUnixPath: String?
    /// `--ssh`: the SSH front door (off when nil), its host key and its authorized keys.
    public var ssh: Endpoint?
    public var sshHostKeyPath = "ssh_host_ed25519_key"
    public var sshAuthorizedKeysPath = "authorized_keys"
    /// `--http` (or its alias `--metrics`): the HTTP listener for /metrics, /healthz, /readyz and /console_log (off when nil).
    public var http: Endpoint?
    /// `--http-allow`: who may use the HTTP listener.
    public var httpAllow = AddressAllowList.loopback
    /// `--http-cert`, `--http-key` (and `--http-client-ca`): HTTPS on the HTTP listener.
    public var httpTLS: NIOSSLContext?
    /// `--http-public-url`: the base of console URLs behind a reverse proxy (nil: the listener's own address).
    public var httpPublicURL: WebOrigin.Base?
    /// `--web-assets`: the folder of the browser console's terminal emulator.
    public var webAssets = "/usr/local/share/vspcd/web"
    /// `--console-log-dir` and its companions; nil when console logs are off.
    public var consoleLogs: ConsoleLogSettings?
    /// `--watch`.
    public var watchPatterns: [WatchPattern] = []
    /// `--ssh-max-startups`, `--ssh-per-source-max-startups`, `--ssh-per-source-max-failures`.
    public var sshSourceLimits = SourceLimitSettings()
    /// `--ssh-idle-timeout`: seconds without input or output after which a session ends; 0: never.
    public var sshIdleTimeout: Double = 0
    /// `--ssh-keepalive-interval` (seconds, 0: off) and `--ssh-keepalive-count-max`.
    public var sshKeepaliveInterval: Double = 15
    public var sshKeepaliveCountMax = 3
    /// `--cluster-listen` and its TLS: the internal link, with `concentrator.cluster` (nil: one daemon alone).
    public var clusterLink: ClusterLinkConfig?

    public init() {}

    public var portRangeStart: Int {
        get { concentrator.portRange.lowerBound }
        set { concentrator.portRange = newValue...max(newValue, concentrator.portRange.upperBound) }
    }
    public var portRangeEnd: Int {
        get { concentrator.portRange.upperBound }
        set { concentrator.portRange = min(concentrator.portRange.lowerBound, newValue)...newValue }
    }
    public var portRange: ClosedRange<Int> { concentrator.portRange }
    /// Where the per-VM telnet ports listen.
    public var listenHost: String {
        get { concentrator.listenHost }
        set { concentrator.listenHost = newValue }
    }
    /// Seconds without VM and without client after which an assignment expires and its port returns to the pool.
    public var vmExpireTime: Double {
        get { concentrator.vmExpireTime }
        set { concentrator.vmExpireTime = newValue }
    }
    /// The service name accepted in DO-PROXY.
    public var serviceURI: String {
        get { concentrator.serviceURI }
        set { concentrator.serviceURI = newValue }
    }
    /// Seconds a pending vMotion waits for its destination's COMPLETE.
    public var vmotionTimeout: Double {
        get { concentrator.vmotionTimeout }
        set { concentrator.vmotionTimeout = newValue }
    }
    /// Seconds a new proxy connection has to agree to the VMware extension.
    public var negotiationTimeout: Double {
        get { concentrator.negotiationTimeout }
        set { concentrator.negotiationTimeout = newValue }
    }
    /// Seconds a VM that gave its uuid has to give its name.
    public var nameTimeout: Double {
        get { concentrator.nameTimeout }
        set { concentrator.nameTimeout = newValue }
    }
    /// Client input held during a vMotion window, per console.
    public var vmotionHoldLimit: Int {
        get { concentrator.vmotionHoldLimit }
        set { concentrator.vmotionHoldLimit = newValue }
    }
    /// Scrollback kept per console, in bytes; 0 turns scrollback off.
    public var scrollbackBytes: Int {
        get { concentrator.scrollbackBytes }
        set { concentrator.scrollbackBytes = newValue }
    }
    /// Bytes of scrollback sent to a telnet client when it attaches; 0 = none.
    public var replayBytes: Int {
        get { concentrator.replayBytes }
        set { concentrator.replayBytes = newValue }
    }
    /// Seconds between scrollback saves to the database.
    public var scrollbackSaveInterval: Double {
        get { concentrator.scrollbackSaveInterval }
        set { concentrator.scrollbackSaveInterval = newValue }
    }
    /// Event retention.
    public var retention: Retention {
        get { concentrator.retention }
        set { concentrator.retention = newValue }
    }
    /// Highest number of descriptors the daemon may use (its RLIMIT_NOFILE).
    public var descriptorLimit: Int {
        get { concentrator.descriptorLimit }
        set { concentrator.descriptorLimit = newValue }
    }
    /// Descriptors new VMs must leave free.
    public var descriptorReserve: Int {
        get { concentrator.descriptorReserve }
        set { concentrator.descriptorReserve = newValue }
    }
    /// Where ESXi hosts may connect from (empty: anywhere).
    public var proxyAllow: AddressAllowList {
        get { concentrator.proxyAllow }
        set { concentrator.proxyAllow = newValue }
    }
    /// Seconds a VM connection may leave what it is sent unread before it is closed.
    public var vmStuckTimeout: Double {
        get { concentrator.vmStuckTimeout }
        set { concentrator.vmStuckTimeout = newValue }
    }
    /// Seconds a console's open connection has to answer the probe when another connection claims the console.
    public var takeoverProbeTimeout: Double {
        get { concentrator.takeoverProbeTimeout }
        set { concentrator.takeoverProbeTimeout = newValue }
    }
    /// `--telnet-ports`.
    public var telnetPorts: TelnetPortsMode {
        get { concentrator.telnetPorts }
        set { concentrator.telnetPorts = newValue }
    }
    /// The daemon's version, for `vspc status`.
    public var version: String {
        get { concentrator.version }
        set { concentrator.version = newValue }
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
