import Foundation
import NIOCore
import VSPCCore

/// What the HTTP listener's console pages and WebSockets ask of the daemon: each call hops onto the
/// concentrator's loop, where the token table lives (`ConsoleTokens`, in the machine).
final class WebConsole: Sendable {
    /// `--http-public-url`: console URLs' base behind a reverse proxy; its origin may open WebSockets too.
    let publicBase: WebOrigin.Base?
    /// `--web-assets`: the folder of the terminal emulator (`xterm.js`, `xterm.css`).
    let assets: String
    /// `--disconnect-backlog`: bytes waiting for a browser past which it is dropped.
    let backlog: Int
    private let driver: ConcentratorDriver

    init(driver: ConcentratorDriver, publicBase: WebOrigin.Base?, assets: String, backlog: Int) {
        self.driver = driver
        self.publicBase = publicBase
        self.assets = assets
        self.backlog = backlog
    }

    func openPage(hash: String, cookie: String?, newCookie: String, address: String) async
        -> Result<(grant: ConsoleTokens.Grant, setCookie: Bool), ConsoleTokens.Refusal> {
        let driver = self.driver
        return (try? await driver.loop.submit {
            driver.answer { $0.openConsolePage(hash: hash, cookie: cookie, newCookie: newCookie, address: address,
                                               now: ConcentratorDriver.now()) }
        }.get()) ?? .failure(.unknown)
    }

    func claim(hash: String, cookie: String?, address: String) async -> Result<ConsoleTokens.Grant, ConsoleTokens.Refusal> {
        let driver = self.driver
        return (try? await driver.loop.submit {
            driver.answer { $0.claimConsole(hash: hash, cookie: cookie, address: address, now: ConcentratorDriver.now()) }
        }.get()) ?? .failure(.unknown)
    }

    func refusal(hash: String, cookie: String?, address: String) async -> ConsoleTokens.Refusal? {
        let driver = self.driver
        return (try? await driver.loop.submit {
            driver.read { $0.consoleRefusal(hash: hash, cookie: cookie, address: address, now: ConcentratorDriver.now()) }
        }.get()) ?? .unknown
    }

    /// A browser's session: a connection id and its sink, then the person on the web door.
    func started(_ sink: WebSocketSink, grant: ConsoleTokens.Grant, hash: String, peer: String) async -> ConnectionID? {
        let driver = self.driver
        return try? await driver.loop.submit { () -> ConnectionID in
            let id = driver.makeID()
            driver.register(id, sink)
            sink.attach(id: id, loop: driver.loop) { [weak driver] in driver?.handle(.writabilityChanged(id, writable: false)) }
            let request = SessionRequest(target: .console(grant.console), principal: .token(grant, hash: hash))
            driver.handle(.sessionStarted(id, door: .web, peer: peer, request: request))
            return id
        }.get()
    }

    /// A claimed token whose session did not start: its browser may try again.
    func release(hash: String) async {
        let driver = self.driver
        try? await driver.loop.submit { driver.answer { $0.releaseConsole(hash: hash, now: ConcentratorDriver.now()) } }.get()
    }

    func input(_ id: ConnectionID, _ bytes: [UInt8]) {
        let driver = self.driver
        driver.loop.execute { driver.handle(.clientBytes(id, bytes)) }
    }

    func ended(_ id: ConnectionID) {
        let driver = self.driver
        driver.loop.execute {
            driver.unregister(id)
            driver.handle(.clientClosed(id))
        }
    }
}
