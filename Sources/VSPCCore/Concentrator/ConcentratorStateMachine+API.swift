import Foundation

/// The JSON API: its tokens (created and revoked over the admin endpoint, so that this view stays right), what
/// a token may see, and the audit of its calls.
extension ConcentratorStateMachine {
    mutating func createToken(_ id: ConnectionID, _ request: APITokenRequest) {
        let token = APIToken(id: APIToken.id(ofHash: request.hash), hash: request.hash, vms: request.vms,
                             readOnly: request.readOnly, comment: request.comment, createdAt: now.date,
                             expiresAt: request.ttl.map { now.date.addingTimeInterval($0) })
        switch apiTokens.add(token) {
        case .failure(.duplicate):
            respond(id, AdminResponse(ok: false, error: "a token with id \(token.id) exists already; create another"), thenClose: true)
        case .failure(.full):
            respond(id, AdminResponse(ok: false, error: "vspcd keeps at most \(APITokens.maxTokens) API tokens"), thenClose: true)
        case .success:
            emit(.persist([.saveToken(token)], token: nil))
            record(.apiTokenCreated, peer: admins[id]?.peer, detail: "token \(token.id); \(Self.tokenTerms(token))")
            respond(id, AdminResponse(ok: true, token: token.info(at: now.date)), thenClose: true)
        }
    }

    mutating func revokeToken(_ id: ConnectionID, _ tokenID: String) {
        guard let before = apiTokens.token(id: tokenID) else {
            respond(id, AdminResponse(ok: false, error: "no API token with id \(tokenID.debugDescription)"), thenClose: true)
            return
        }
        guard before.revokedAt == nil, let token = apiTokens.revoke(id: tokenID, at: now.date) else {
            respond(id, AdminResponse(ok: true, token: before.info(at: now.date)), thenClose: true)
            return
        }
        emit(.persist([.revokeToken(id: tokenID, at: now.date)], token: nil))
        record(.apiTokenRevoked, peer: admins[id]?.peer, detail: "token \(token.id); \(Self.tokenTerms(token))")
        respond(id, AdminResponse(ok: true, token: token.info(at: now.date)), thenClose: true)
    }

    /// A token's terms, for its events: the consoles it sees, its mode, its expiry, its comment.
    static func tokenTerms(_ token: APIToken) -> String {
        var terms = "vms=\(token.vms.isEmpty ? "*" : token.vms.joined(separator: ","))"
        terms += token.readOnly ? " read-only" : " read-write"
        if let expiry = token.expiresAt { terms += " expires \(AdminProtocol.timestamp(expiry))" }
        if !token.comment.isEmpty { terms += "; \(token.comment)" }
        return terms
    }

    /// Records an API call, or counts it toward its token's next recorded read (see `APITokens.audit`).
    mutating func apiCalled(_ call: APICall) {
        let (recorded, leftOut) = apiTokens.audit(call, now: monotonicNow)
        guard recorded else { return }
        var detail = "token \(call.tokenID): \(call.method) \(call.path) \(call.status)"
        if leftOut > 0 { detail += " (and \(grouped(leftOut)) more such reads in the minute before)" }
        let key = call.console
        emitRecord(ConsoleEvent(kind: .apiCall, time: now.date, uuid: key?.uuid, label: key?.label ?? "",
                                name: key.flatMap { consoles[$0]?.name }, peer: call.peer, detail: detail,
                                door: "api", user: call.subject,
                                keyComment: apiTokens.token(id: call.tokenID).flatMap { $0.comment.isEmpty ? nil : $0.comment }))
    }

    /// The live token whose SHA-256 is `hash` at `date`, or nil.
    public func apiToken(hash: String, at date: Date) -> APIToken? { apiTokens.live(hash: hash, at: date) }

    /// The listed consoles `token` may see, as `consoleInfos()`.
    public func consoleInfos(for token: APIToken) -> [ConsoleInfo] {
        consoleInfos().filter { token.sees(name: $0.name, uuid: $0.uuid) }
    }

    /// The console `query` names among those `token` may see (any label when `label` is nil); a console it
    /// may not see is not found, as one that does not exist.
    public func apiConsole(_ query: String, label: String?, for token: APIToken) -> Result<ConsoleInfo, AdminError> {
        let visible = liveCandidates(label: label).filter { token.sees(name: $0.name, uuid: $0.uuid) }
        switch VMLookup.choose(query, among: visible, label: label, scope: .console) {
        case .found(let found):
            guard let console = consoles[ConsoleKey(uuid: found.uuid, label: found.label)] else {
                return .failure(AdminError("no console matches \(query.debugDescription)"))
            }
            return .success(info(console))
        case .notFound:
            return .failure(AdminError("no console matches \(query.debugDescription)"))
        case .ambiguous(let candidates):
            return .failure(AdminError(VMLookup.ambiguity(query, candidates), candidates: candidates))
        }
    }
}
