import Foundation
import Logging
import ServiceLifecycle
import VSPCClient
import VSPCNet

/// Starts the server, tells systemd (READY=1, WATCHDOG=1 from the server's event loop, STOPPING=1), and
/// stops gracefully on SIGTERM/SIGINT.
struct DaemonService: Service, CustomStringConvertible {
    var description: String { "vspcd" }
    let server: VSPCServer
    let saved: SavedState
    let notifier: SystemdNotifier
    let logger: Logger

    func run() async throws {
        do {
            try await server.start(saved: saved)
        } catch let error as ListenError {
            logger.debug("\(error.detail)")
            throw error
        }
        notifier.ready(status: "serving")
        let watchdog = notifier.startWatchdog(on: server.eventLoop)
        if let interval = notifier.watchdogInterval {
            logger.info("systemd watchdog: WATCHDOG=1 every \(interval) s")
        }
        try? await gracefulShutdown()
        notifier.stopping(status: "stopping")
        watchdog?.cancel()
        await server.shutdown()
    }
}
