import Foundation
import Logging
import NIOCore
import VSPCCore

/// The SSH front door of the daemon: host key, authorized keys (reloaded on SIGHUP and when the file changes,
/// without dropping sessions), and the server whose sessions the concentrator serves.
extension VSPCServer {
    func startSSH() async throws {
        guard let endpoint = config.ssh else { return }
        let hostKey: SSHHostKey
        do {
            hostKey = try SSHHostKey.loadOrCreate(at: config.sshHostKeyPath)
        } catch {
            throw ServerError("\(error)")
        }
        for warning in hostKey.warnings { logger.warning("\(warning)") }
        let holder = AuthorizedKeysHolder(readAuthorizedKeys(log: true))
        var settings = SSHServerSettings(host: endpoint.host, port: endpoint.port)
        // The session's own queue only ever holds what its window and socket take, plus one chunk of the
        // sink's backlog (which does the skipping): its bound is a last resort.
        settings.sessionOutputLimit = config.skipBacklog + (1 << 20)
        settings.sourceLimits = config.sshSourceLimits
        settings.idleTimeout = config.sshIdleTimeout > 0 ? .nanoseconds(Int64(config.sshIdleTimeout * 1e9)) : nil
        settings.keepaliveInterval = config.sshKeepaliveInterval > 0
            ? .nanoseconds(Int64(config.sshKeepaliveInterval * 1e9)) : nil
        settings.keepaliveCountMax = config.sshKeepaliveCountMax
        let server = SSHServer(settings: settings, hostKey: hostKey, authorizedKeys: holder, gateway: driver,
                               group: driver.loop, logger: logger)
        try await server.start()
        ssh.withLockedValue { $0 = SSHState(server: server, holder: holder, stamp: Self.stamp(config.sshAuthorizedKeysPath)) }
        watchAuthorizedKeys()
    }

    func stopSSH() async {
        let server = ssh.withLockedValue { state -> SSHServer? in
            state?.watcher?.cancel()
            return state?.server
        }
        await server?.stop()
    }

    /// The bound SSH port (useful with port 0).
    public var sshPort: Int? { ssh.withLockedValue { $0?.server.localAddress?.port } }

    /// Re-reads the authorized keys (SIGHUP, or the file changed). Open sessions are re-checked by the machine:
    /// a key that is gone, or no longer reaches its console, ends them; a key made read-only makes them so.
    public func reloadAuthorizedKeys() {
        guard let holder = ssh.withLockedValue({ $0?.holder }) else { return }
        let keys = readAuthorizedKeys(log: true)
        holder.replace(with: keys)
        ssh.withLockedValue { $0?.stamp = Self.stamp(config.sshAuthorizedKeysPath) }
        logger.notice("reloaded authorized keys from \(config.sshAuthorizedKeysPath): \(keys.usableKeys.count) usable")
        let driver = self.driver
        let timeZone = TimeZone.current
        driver.loop.execute { driver.handle(.keysReloaded(keys, timeZone: timeZone)) }
    }

    /// The keys, with one line per malformed or refused entry; a missing or unreadable file admits nobody.
    func readAuthorizedKeys(log: Bool) -> AuthorizedKeys {
        do {
            let keys = try AuthorizedKeysHolder.load(path: config.sshAuthorizedKeysPath)
            if log { keys.log(path: config.sshAuthorizedKeysPath, to: logger) }
            return keys
        } catch {
            if log { logger.warning("\(error); nobody can log in over ssh until it exists") }
            return .empty
        }
    }

    /// Checks the file every 2 s (off the event loop) and reloads it when it changed.
    func watchAuthorizedKeys() {
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "vspcd.authorized-keys"))
        timer.schedule(deadline: .now() + 2, repeating: 2)
        timer.setEventHandler { [weak self] in
            guard let self else { return }
            let now = Self.stamp(self.config.sshAuthorizedKeysPath)
            if self.ssh.withLockedValue({ $0?.stamp }) != now { self.reloadAuthorizedKeys() }
        }
        ssh.withLockedValue { $0?.watcher = timer }
        timer.resume()
    }

    /// What tells a changed file: its modification time, size and inode.
    static func stamp(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return "missing" }
        return "\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec) \(info.st_size) \(info.st_ino)"
    }
}

/// The running SSH front door.
struct SSHState {
    var server: SSHServer
    var holder: AuthorizedKeysHolder
    var stamp: String
    var watcher: DispatchSourceTimer?
}
