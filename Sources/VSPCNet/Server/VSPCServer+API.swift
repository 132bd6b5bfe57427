import Foundation
import NIOCore
import VSPCCore

extension VSPCServer {
    /// What the JSON API asks of the daemon: the concentrator decides (tokens, what a token sees, the audit);
    /// the records and the console logs are read off the loop.
    func apiServices() -> APIServices {
        let driver = self.driver
        let loop = driver.loop
        let store = self.store
        return APIServices(
            token: { hash in
                let now = ConcentratorDriver.now().date
                return (try? await loop.submit { driver.read { $0.apiToken(hash: hash, at: now) } }.get()) ?? nil
            },
            consoles: { token in (try? await loop.submit { driver.read { $0.consoleInfos(for: token) } }.get()) ?? [] },
            console: { reference, label, token in
                do {
                    return try await loop.submit { driver.read { $0.apiConsole(reference, label: label, for: token) } }.get()
                } catch {
                    return .failure(AdminError("vspcd is stopping"))
                }
            },
            events: { key, since, limit in
                try store.events(uuid: key.uuid, label: key.label, since: since, limit: limit)
            },
            log: consoleLogWindow,
            audit: { call in loop.execute { driver.handle(.apiCalled(call)) } }
        )
    }

    /// Whether a listener's host is this machine only (a name other than localhost counts as beyond it).
    static func isLoopback(_ host: String) -> Bool {
        var bare = host
        if bare.hasPrefix("["), bare.hasSuffix("]") { bare = String(bare.dropFirst().dropLast()) }
        if bare.isEmpty || bare == "localhost" || bare == "::1" { return true }
        return bare.hasPrefix("127.")
    }
}
