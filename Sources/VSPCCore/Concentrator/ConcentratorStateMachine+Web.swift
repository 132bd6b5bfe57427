import Foundation

/// A `url` request waiting for the driver's token.
struct PendingMint {
    var console: ConsoleKey
    var mode: AccessMode
    var ttl: Int
}

/// The browser door's one-time console URLs: minted over the admin endpoint (`vspc url`), opened by the HTTP
/// listener's page and WebSocket. The token table (`ConsoleTokens`) holds hashes only; the token itself passes
/// through here once, into the minter's answer.
extension ConcentratorStateMachine {
    /// `url`: the console is found, then the driver is asked for a token (`.makeToken`, answered by `tokenMade`).
    mutating func mintURL(_ id: ConnectionID, vm: String, label: String?, mode: AccessMode, ttl: Int) {
        switch findConsole(vm, label: label) {
        case .failure(let error):
            respond(id, AdminResponse(ok: false, error: error.message, candidates: error.candidates), thenClose: true)
        case .success(let key):
            admins[id]?.minting = PendingMint(console: key, mode: mode, ttl: ttl)
            admins[id]?.answered = true
            emit(.makeToken(id, uid: admins[id]?.uid))
        }
    }

    mutating func tokenMade(_ id: ConnectionID, token: String, hash: String, base: String?, userName: String?) {
        guard let admin = admins[id], let pending = admin.minting else { return }
        // `uid 1000 (alice)` over the Unix socket; `admin-tcp 127.0.0.1:41234` over TCP; `api token ID` for the
        // JSON API (its request comes from inside the daemon, with that peer; no network peer is spelled so).
        let minter = admin.uid.map { uid in "uid \(uid)" + (userName.map { " (\($0))" } ?? "") }
            ?? (admin.peer.hasPrefix(APICall.minterPrefix) ? admin.peer : "admin-tcp \(admin.peer)")
        admins[id]?.minting = nil
        guard let base else {
            return respond(id, AdminResponse(ok: false, error: "console URLs need the HTTP listener: start vspcd with --http"),
                           thenClose: true)
        }
        guard let console = consoles[pending.console] else {
            return respond(id, AdminResponse(ok: false, error: "that console is gone"), thenClose: true)
        }
        switch tokens.mint(hash: hash, console: pending.console, mode: pending.mode, ttl: pending.ttl,
                           minter: minter, now: monotonicNow) {
        case .failure(let refusal):
            respond(id, AdminResponse(ok: false, error: refusal.message), thenClose: true)
        case .success(let grant):
            let expires = now.date.addingTimeInterval(Double(min(max(pending.ttl, 1), ConsoleTokens.maxTTL)))
            // On the console's record (never the token itself): `vspc history` says who may have opened it.
            record(.consoleURL, pending.console, peer: admin.peer,
                   detail: "token=\(grant.id) mode=\(grant.mode.rawValue) until \(AdminProtocol.timestamp(expires)) minted-by=\(DisplayText.escape(grant.minter))")
            var response = AdminResponse(ok: true, vm: info(console))
            response.url = Self.trimmedBase(base) + "/console/" + token
            response.tokenID = grant.id
            response.expires = AdminProtocol.timestamp(expires)
            response.mode = grant.mode
            respond(id, response, thenClose: true)
        }
    }

    /// `https://host/vspc/` and `https://host/vspc` give the same URLs.
    static func trimmedBase(_ base: String) -> String {
        var base = base
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }

    /// `GET /console/<token>`: may this browser (its cookie's hash, if any) have the page? A fresh token is bound
    /// to `newCookie` (then `setCookie`, and the driver sets it).
    public mutating func openConsolePage(hash: String, cookie: String?, newCookie: String, address: String,
                                         now: Now) -> Result<(grant: ConsoleTokens.Grant, setCookie: Bool), ConsoleTokens.Refusal> {
        self.now = now
        let result = tokens.open(hash: hash, cookie: cookie, newCookie: newCookie, address: address, now: monotonicNow)
        if case .success(let opened) = result, consoles[opened.grant.console] == nil { return .failure(.unknown) }
        return result
    }

    /// The WebSocket upgrade of `GET /console/<token>/ws`: the session is taken now, or refused before the
    /// upgrade. The session itself starts with `sessionStarted(door: .web)`, with `.token(grant, hash)`.
    public mutating func claimConsole(hash: String, cookie: String?, address: String, now: Now) -> Result<ConsoleTokens.Grant, ConsoleTokens.Refusal> {
        self.now = now
        return tokens.claim(hash: hash, cookie: cookie, address: address, now: monotonicNow)
    }

    /// A session refused after its token was claimed (its console gone, the open-file limit): its browser may
    /// try again, as after a close.
    mutating func releaseToken(_ request: SessionRequest) {
        if case let .token(_, hash) = request.principal { tokens.release(hash: hash, now: monotonicNow) }
    }

    /// A claimed session whose upgrade did not happen after all: its browser may try again.
    public mutating func releaseConsole(hash: String, now: Now) {
        self.now = now
        tokens.release(hash: hash, now: monotonicNow)
    }
}

extension ConcentratorStateMachine {
    /// Why a WebSocket request with this token would be refused now, counting nothing (nil: it would not).
    public func consoleRefusal(hash: String, cookie: String?, address: String, now: Now) -> ConsoleTokens.Refusal? {
        tokens.peek(hash: hash, cookie: cookie, address: address, now: Int64(clamping: now.monotonic))
    }
}

extension ConcentratorStateMachine {
    /// What the VM's connection did, for the doors that show notices apart (the browser's status line); the
    /// other doors' bytes stay as they were.
    mutating func statusLine(_ kind: EventKind, _ key: ConsoleKey) {
        let text: String
        switch kind {
        case .vmConnect: text = "the VM connected"
        case .vmDisconnect: text = "the VM disconnected; this page waits for it"
        case .vmotionBegin: text = "vMotion started: the console stays open"
        case .vmotionComplete: text = "vMotion complete: the VM runs on its new host"
        case .vmotionAbort: text = "vMotion aborted: the VM stays on its host"
        case .vmotionExpired: text = "vMotion timed out"
        default: return
        }
        guard let console = consoles[key] else { return }
        for id in console.clients.sorted() where clients[id]?.door.noticesApart == true { notice(id, text) }
    }
}
