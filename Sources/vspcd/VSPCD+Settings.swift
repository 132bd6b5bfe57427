import ArgumentParser
import Foundation
import VSPCCore
import VSPCNet
import VSPCStore

/// "(default: :6779)" for a flag's help: the options carry no defaults of their own (see `DaemonSettings`).
func def(_ key: String) -> String { "(default: \(DaemonSettings.defaultText(key)))" }

extension VSPCD {
    /// The settings given on the command line, by key; flags that were not given are absent.
    var commandLineSettings: [String: SettingValue] {
        var given: [String: SettingValue] = [:]
        func put(_ key: String, _ value: SettingValue?) { if let value { given[key] = value } }
        put("proxy", proxy.map { .string($0) })
        put("admin", admin.map { .string($0) })
        put("listen-host", listenHost.map { .string($0) })
        put("port-range-start", portRangeStart.map { .integer($0) })
        put("port-range-end", portRangeEnd.map { .integer($0) })
        put("vm-expire-time", vmExpireTime.map { .number($0) })
        put("db", db.map { .string($0) })
        put("service-uri", serviceUri.map { .string($0) })
        put("ssl", ssl ? .bool(true) : nil)
        put("ssl-cert", sslCert.map { .string($0) })
        put("ssl-key", sslKey.map { .string($0) })
        put("vmotion-timeout", vmotionTimeout.map { .number($0) })
        put("scrollback", scrollback.map { .integer($0) })
        put("replay", replay.map { .integer($0) })
        put("event-max-age-days", eventMaxAgeDays.map { .number($0) })
        put("event-max-count", eventMaxCount.map { .integer($0) })
        put("verbose", verbose ? .bool(true) : nil)
        put("debug", debug ? .bool(true) : nil)
        put("log-format", logFormat.map { .string($0) })
        put("proxy-allow", proxyAllow.map { .string($0) })
        put("vm-stuck-timeout", vmStuckTimeout.map { .number($0) })
        put("takeover-probe-timeout", takeoverProbeTimeout.map { .number($0) })
        put("metrics", metrics.map { .string($0) })
        put("http", http.map { .string($0) })
        put("http-allow", httpAllow.map { .string($0) })
        put("http-cert", httpCert.map { .string($0) })
        put("http-key", httpKey.map { .string($0) })
        put("http-client-ca", httpClientCa.map { .string($0) })
        put("http-public-url", httpPublicUrl.map { .string($0) })
        put("web-assets", webAssets.map { .string($0) })
        put("console-log-dir", consoleLogDir.map { .string($0) })
        put("console-log-group", consoleLogGroup.map { .string($0) })
        put("console-log-max-bytes", consoleLogMaxBytes.map { .integer($0) })
        put("console-log-keep", consoleLogKeep.map { .integer($0) })
        put("console-log-max-age-days", consoleLogMaxAgeDays.map { .integer($0) })
        put("watch", watch.isEmpty ? nil : .list(watch))
        put("ssh", ssh.map { .string($0) })
        put("ssh-host-key", sshHostKey.map { .string($0) })
        put("ssh-authorized-keys", sshAuthorizedKeys.map { .string($0) })
        put("telnet-ports", telnetPorts.map { .string($0) })
        put("disconnect-backlog", disconnectBacklog.map { .integer($0) })
        put("skip-backlog", skipBacklog.map { .integer($0) })
        put("identify-timeout", identifyTimeout.map { .number($0) })
        put("proxy-max-unidentified", proxyMaxUnidentified.map { .integer($0) })
        put("proxy-max-unidentified-per-address", proxyMaxUnidentifiedPerAddress.map { .integer($0) })
        put("new-ports-per-minute", newPortsPerMinute.map { .integer($0) })
        put("port-reserve-percent", portReservePercent.map { .integer($0) })
        put("ssh-max-startups", sshMaxStartups.map { .string($0) })
        put("ssh-per-source-max-startups", sshPerSourceMaxStartups.map { .integer($0) })
        put("ssh-per-source-max-failures", sshPerSourceMaxFailures.map { .integer($0) })
        put("ssh-idle-timeout", sshIdleTimeout.map { .number($0) })
        put("ssh-keepalive-interval", sshKeepaliveInterval.map { .number($0) })
        put("ssh-keepalive-count-max", sshKeepaliveCountMax.map { .integer($0) })
        put("node", node.map { .string($0) })
        put("lease-timeout", leaseTimeout.map { .number($0) })
        put("cluster-listen", clusterListen.map { .string($0) })
        put("cluster-cert", clusterCert.map { .string($0) })
        put("cluster-key", clusterKey.map { .string($0) })
        put("cluster-ca", clusterCa.map { .string($0) })
        return given
    }

    /// Reads the config file (if any), merges it under the command line, and checks everything; errors name
    /// the file and line or the flag. Used at start-up and by every SIGHUP.
    static func loadSettings(configPath: String?, commandLine: [String: SettingValue]) throws -> ResolvedSettings {
        let file = try configPath.map { try ConfigFile.read(path: $0) }
        let resolved = try DaemonSettings.resolve(file: file, commandLine: commandLine)
        guard Endpoint.parse(resolved.settings.proxy, defaultHost: "0.0.0.0") != nil else {
            throw resolved.error("proxy", "must be [host]:port, got \(resolved.settings.proxy.debugDescription)")
        }
        guard AdminEndpoint.parse(resolved.settings.admin, defaultHost: "127.0.0.1") != nil else {
            throw resolved.error("admin", "must be [host]:port or unix:PATH, got \(resolved.settings.admin.debugDescription)")
        }
        return resolved
    }

    /// vspcd does not create the folder of a Unix admin socket (the unit's RuntimeDirectory=vspcd creates
    /// /run/vspcd): a missing one is said in a plain sentence before anything listens.
    static func adminSocketFolderProblem(_ path: String) -> String? {
        let folder = (path as NSString).deletingLastPathComponent
        let dir = folder.isEmpty ? "." : folder
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue { return nil }
        return "cannot listen on the admin socket \(path): its folder \(dir) does not exist; create it "
            + "(under systemd, the unit's RuntimeDirectory=vspcd creates /run/vspcd)"
    }
}

extension ReloadableSettings {
    /// The store's retention for these settings.
    var retention: Retention { Retention(maxAge: retentionMaxAgeSeconds, maxCount: retentionMaxCount) }
}
