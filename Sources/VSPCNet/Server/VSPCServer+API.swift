import Foundation
import NIOConcurrencyHelpers
import NIOCore
import VSPCCore

extension VSPCServer {
    /// What the JSON API asks of the daemon: the concentrator decides (tokens, what a token sees, the audit);
    /// the records and the console logs are read off the loop.
    func apiServices() -> APIServices {
        let driver = self.driver
        let loop = driver.loop
        let store = self.store
        let logger = self.logger
        let refusals = NIOLockedValueBox(AddressLogLimiter())
        var services = APIServices(
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
            mintURL: { ask in
                // As `vspc url` does, through the admin command `url`, from a connection inside the daemon whose
                // peer names the token (the minter in the URL's records).
                let request = AdminRequest(command: "url", vm: ask.console.uuid, label: ask.console.label,
                                           readOnly: ask.readOnly, ttl: ask.ttl)
                let answer = try? await loop.flatSubmit { driver.adminAnswer(request, peer: ask.minter) }.get()
                guard let answer = answer ?? nil else { return .failure(AdminError("vspcd did not answer in time")) }
                guard answer.ok, let url = answer.url else {
                    return .failure(AdminError(answer.error ?? "vspcd minted no URL"))
                }
                return .success(url)
            },
            audit: { call in loop.execute { driver.handle(.apiCalled(call)) } }
        )
        services.refused = { peer in
            let now = Int64(clamping: NIODeadline.now().uptimeNanoseconds)
            let note = refusals.withLockedValue { $0.refusal(from: Self.address(ofPeer: peer), now: now) }
            guard note.log else { return }
            let more = note.suppressedBefore > 0 ? " (and \(note.suppressedBefore) more in the last minute)" : ""
            logger.notice("refused a JSON API call from \(peer): no valid token\(more)")
        }
        return services
    }

    /// The address of a peer as `PeerAddress` writes it (`10.0.0.1:5000`, `[fd00::1]:5000`).
    static func address(ofPeer peer: String) -> IPAddress? {
        if peer.hasPrefix("["), let end = peer.firstIndex(of: "]") {
            return IPAddress(String(peer[peer.index(after: peer.startIndex)..<end]))
        }
        return IPAddress(String(peer.split(separator: ":").first ?? ""))
    }

    /// Whether a listener's host is this machine only (a name other than localhost counts as beyond it).
    static func isLoopback(_ host: String) -> Bool {
        var bare = host
        if bare.hasPrefix("["), bare.hasSuffix("]") { bare = String(bare.dropFirst().dropLast()) }
        if bare.isEmpty || bare == "localhost" || bare == "::1" { return true }
        return bare.hasPrefix("127.")
    }
}
