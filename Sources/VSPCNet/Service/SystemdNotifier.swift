import Foundation
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// systemd's notify protocol (`Type=notify`): datagrams such as `READY=1` to the Unix socket named by
/// `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`). Without `NOTIFY_SOCKET` every
/// call does nothing. The watchdog interval is half of `$WATCHDOG_USEC`, when `$WATCHDOG_PID` is unset or
/// names this process. Sends never block (MSG_DONTWAIT), so they are safe on an event loop.
public struct SystemdNotifier: Sendable {
    /// The socket address: the path bytes, with a leading NUL for an abstract name. Nil: notify is off.
    public let socketAddress: [UInt8]?
    /// Seconds between WATCHDOG=1 pings (half of WatchdogSec), nil when the watchdog is off.
    public let watchdogInterval: Double?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, pid: Int32 = getpid()) {
        socketAddress = Self.address(environment["NOTIFY_SOCKET"])
        watchdogInterval = socketAddress == nil ? nil
            : Self.watchdogInterval(usec: environment["WATCHDOG_USEC"], pid: environment["WATCHDOG_PID"], ownPID: pid)
    }

    public var isEnabled: Bool { socketAddress != nil }

    /// The socket path bytes for `NOTIFY_SOCKET`, or nil when it is unset, empty, too long or not a path.
    static func address(_ value: String?) -> [UInt8]? {
        guard let value, !value.isEmpty else { return nil }
        var bytes = Array(value.utf8)
        if bytes[0] == UInt8(ascii: "@") {
            bytes[0] = 0
        } else if bytes[0] != UInt8(ascii: "/") {
            return nil
        }
        guard bytes.count > 1, bytes.count <= MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1 else { return nil }
        return bytes
    }

    static func watchdogInterval(usec: String?, pid: String?, ownPID: Int32) -> Double? {
        guard let usec, let micros = UInt64(usec), micros > 0 else { return nil }
        if let pid, !pid.isEmpty, Int32(pid) != ownPID { return nil }
        return Double(micros) / 2_000_000
    }

    /// Sends one notification (e.g. "READY=1\nSTATUS=serving"); false when notify is off or the send failed.
    @discardableResult
    public func notify(_ state: String) -> Bool {
        guard let path = socketAddress else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: path)
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + path.count)
        let payload = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                payload.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
        return sent == payload.count
    }

    /// READY=1, once the daemon serves.
    @discardableResult
    public func ready(status: String? = nil) -> Bool {
        notify("READY=1" + (status.map { "\nSTATUS=\(Self.oneLine($0))" } ?? ""))
    }

    /// STOPPING=1, when a graceful stop begins.
    @discardableResult
    public func stopping(status: String? = nil) -> Bool {
        notify("STOPPING=1" + (status.map { "\nSTATUS=\(Self.oneLine($0))" } ?? ""))
    }

    /// RELOADING=1 is for Type=notify-reload; vspcd's unit uses ExecReload, so the daemon only says STATUS.
    @discardableResult
    public func status(_ text: String) -> Bool { notify("STATUS=\(Self.oneLine(text))") }

    /// Sends WATCHDOG=1 every `watchdogInterval` from `eventLoop`, so the pings stop if that loop stalls;
    /// nil when the watchdog is off. Cancel the task at shutdown.
    public func startWatchdog(on eventLoop: any EventLoop) -> RepeatedTask? {
        guard let interval = watchdogInterval else { return nil }
        let nanos = Int64(max(0.001, interval) * 1_000_000_000)
        return eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .nanoseconds(nanos)) { _ in
            self.notify("WATCHDOG=1")
        }
    }

    static func oneLine(_ text: String) -> String {
        String(text.unicodeScalars.map { $0.value < 0x20 ? " " : Character($0) })
    }
}
