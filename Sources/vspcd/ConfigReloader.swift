import Dispatch
import Foundation
import Logging
import VSPCCore
import VSPCNet
#if canImport(Glibc)
import Glibc
#endif

/// SIGHUP: re-reads `--config` (the command line still wins), applies what can change live (the log level
/// here; `onReload` hands expiry and retention to the server), and logs one line such as
/// `reloaded: verbose false -> true; needs a restart: proxy`. A file that no longer parses or checks is
/// reported and changes nothing.
final class ConfigReloader: @unchecked Sendable {
    let configPath: String?
    let commandLine: [String: SettingValue]
    let logControl: LogControl
    let logger: Logger
    private let queue = DispatchQueue(label: "vspcd.reload")
    private var source: DispatchSourceSignal?
    /// Only touched on `queue`.
    private var running: DaemonSettings
    private var _onReload: (@Sendable (ReloadableSettings) -> Void)?
    private var _onHangUp: (@Sendable () -> Void)?

    /// Called on the reload queue on every SIGHUP, config file or not (the SSH authorized keys are re-read).
    var onHangUp: (@Sendable () -> Void)? {
        get { queue.sync { _onHangUp } }
        set { queue.sync { _onHangUp = newValue } }
    }

    /// Installs the SIGHUP handler at once (from then on SIGHUP no longer ends the process).
    init(configPath: String?, commandLine: [String: SettingValue], running: DaemonSettings,
         logControl: LogControl, logger: Logger) {
        self.configPath = configPath
        self.commandLine = commandLine
        self.running = running
        self.logControl = logControl
        self.logger = logger
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: queue)
        source.setEventHandler { [weak self] in self?.reload() }
        source.resume()
        self.source = source
    }

    /// Called on the reload queue after a reload that changed a live setting, with the settings now in force.
    var onReload: (@Sendable (ReloadableSettings) -> Void)? {
        get { queue.sync { _onReload } }
        set { queue.sync { _onReload = newValue } }
    }

    /// The settings in force (live keys as last reloaded, the others as started).
    var current: DaemonSettings { queue.sync { running } }

    /// Re-reads the file and applies it; runs on the reload queue.
    func reload() {
        _onHangUp?()
        guard let configPath else {
            logger.notice("SIGHUP: vspcd runs without --config; nothing to reload")
            return
        }
        let reloaded: ResolvedSettings
        do {
            reloaded = try VSPCD.loadSettings(configPath: configPath, commandLine: commandLine)
        } catch {
            logger.error("reload failed, settings unchanged: \(error)")
            return
        }
        let plan = DaemonSettings.planReload(running: running, reloaded: reloaded.settings)
        running = plan.settings
        logControl.level = plan.settings.verbosity.loggerLevel
        // Logged at notice, so the line shows whatever the level now is.
        logger.notice("\(plan.summary)")
        if plan.changesLive { _onReload?(plan.settings.reloadable) }
    }

    func cancel() { source?.cancel() }
}
