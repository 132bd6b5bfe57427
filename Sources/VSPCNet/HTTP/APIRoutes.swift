import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOPosix
import VSPCCore

/// The JSON API under `/api/v1` (docs/openapi.json). Every resource but the document itself needs
/// `Authorization: Bearer <token>` (`vspc token create`); a token sees only the consoles its `--vms` globs
/// allow (others are 404, as if they did not exist). Each answered call goes to the audit.
enum APIRoutes {
    /// The most a log request returns; a wider window is refused (413) so that one request cannot pin memory.
    static let maxLogBytes = 16 << 20

    static func add<Context: RequestContext>(to router: Router<Context>, services: APIServices?, pool: NIOThreadPool) {
        router.get("api/v1/openapi.json") { _, _ -> Response in
            HTTPListener.response(.ok, contentType: "application/json", bytes: Array(APIDocument.json.utf8))
        }
        guard let services else { return }
        router.get("api/v1/consoles") { request, _ -> Response in
            // The router also takes `/api/v1/consoles/` (an empty {vm}) here.
            guard request.uri.path == "/api/v1/consoles" else {
                return error(.badRequest, "name a VM: its name, its uuid in any spelling, or a unique prefix of either")
            }
            return await authorized(request, services) { token in
                (json(.ok, await services.consoles(token)), nil)
            }
        }
        router.get("api/v1/consoles/:vm") { request, context -> Response in
            await authorized(request, services) { token in
                try await withConsole(request, context, token, services) { console in json(.ok, console) }
            }
        }
        router.get("api/v1/consoles/:vm/history") { request, context -> Response in
            await authorized(request, services) { token in
                try await withConsole(request, context, token, services) { console in
                    try await history(request, console, services, pool)
                }
            }
        }
        router.get("api/v1/consoles/:vm/log") { request, context -> Response in
            await authorized(request, services) { token in
                try await withConsole(request, context, token, services) { console in
                    try await log(request, console, services, pool)
                }
            }
        }
        router.post("api/v1/consoles/:vm/urls") { request, context -> Response in
            var request = request
            let body = try? await request.collectBody(upTo: 4096)
            return await authorized(request, services, acts: true) { token in
                try await withConsole(request, context, token, services) { console in
                    await mintURL(request, body, console, token, services)
                }
            }
        }
        // Added last, so it sees only the requests that no route took (Hummingbird applies a middleware to the
        // routes added after it, and to the not-found answer).
        router.add(middleware: APIMethodCheck())
    }

    /// The methods an API path allows, or nil when it is not one of the API's paths.
    static func allowed(_ path: String) -> String? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].isEmpty, parts[1] == "api", parts[2] == "v1" else { return nil }
        switch (parts.count, parts[3]) {
        case (4, "openapi.json"), (4, "consoles"), (5, "consoles"): return "GET"
        case (6, "consoles") where !parts[4].isEmpty:
            switch parts[5] {
            case "history", "log": return "GET"
            case "urls": return "POST"
            default: return nil
            }
        default: return nil
        }
    }

    /// A request no API route took: a known path asked with a method it does not take gets `405` with `Allow`;
    /// anything else under `/api/` a JSON `404`.
    struct APIMethodCheck<Context: RequestContext>: RouterMiddleware {
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            guard request.uri.path.hasPrefix("/api/") else { return try await next(request, context) }
            guard let allow = APIRoutes.allowed(request.uri.path), request.method.rawValue != allow else {
                return APIRoutes.error(.notFound, "no such resource; the API is described at /api/v1/openapi.json")
            }
            var response = APIRoutes.error(.methodNotAllowed, "\(request.method.rawValue) is not allowed here; \(allow) is")
            response.headers[.allow] = allow
            if request.method == .head {
                response.body = ResponseBody()
                response.headers[.contentLength] = "0"
            }
            return response
        }
    }

    // MARK: authorization and audit

    /// Runs `body` with the request's token, or answers 401; then hands the call to the audit.
    static func authorized(_ request: Request, _ services: APIServices, acts: Bool = false,
                           _ body: (APIToken) async throws -> (Response, ConsoleInfo?)) async -> Response {
        guard let presented = bearer(request), let token = await services.token(WebConsoleSecrets.hash(presented)) else {
            services.refused(request.headers[APIRequestFacts.peerField] ?? "unknown")
            var response = error(.unauthorized, "give a valid API token: Authorization: Bearer <token> (vspc token create)")
            response.headers[.wwwAuthenticate] = "Bearer realm=\"vspcd\""
            return response
        }
        let (response, console): (Response, ConsoleInfo?)
        do {
            (response, console) = try await body(token)
        } catch {
            (response, console) = (Self.error(.internalServerError, "\(error)"), nil)
        }
        services.audit(APICall(
            tokenID: token.id, method: request.method.rawValue, path: String(request.uri.path.prefix(512)),
            status: response.status.code, peer: request.headers[APIRequestFacts.peerField] ?? "unknown",
            subject: request.headers[APIRequestFacts.subjectField],
            console: console.map { ConsoleKey(uuid: $0.uuid, label: $0.label) }, acts: acts))
        return response
    }

    /// The token of `Authorization: Bearer <token>`, or nil.
    static func bearer(_ request: Request) -> String? {
        guard let field = request.headers[.authorization], field.utf8.count <= 512 else { return nil }
        let parts = field.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    /// Resolves `{vm}` (and `?label=`) among the consoles the token sees: 404 or 409 otherwise.
    static func withConsole<Context: RequestContext>(
        _ request: Request, _ context: Context, _ token: APIToken, _ services: APIServices,
        _ body: (ConsoleInfo) async throws -> Response
    ) async throws -> (Response, ConsoleInfo?) {
        guard let reference = context.parameters.get("vm")?.removingPercentEncoding,
            !reference.isEmpty, reference.utf8.count <= AdminRequest.maxVMBytes
        else {
            return (error(.badRequest, "name a VM: its name, its uuid in any spelling, or a unique prefix of either"), nil)
        }
        let label = request.uri.queryParameters.get("label")
        if let label, !SerialPortLabel.isValid(label) { return (error(.badRequest, "not a serial-port label"), nil) }
        switch await services.console(reference, label, token) {
        case .success(let console):
            return (try await body(console), console)
        case .failure(let refusal):
            guard let candidates = refusal.candidates else { return (error(.notFound, refusal.message), nil) }
            return (json(.conflict, APIError(error: refusal.message, candidates: candidates)), nil)
        }
    }

    // MARK: resources

    static func history(_ request: Request, _ console: ConsoleInfo, _ services: APIServices,
                        _ pool: NIOThreadPool) async throws -> Response {
        var since: Date?
        if let text = request.uri.queryParameters.get("since") {
            guard let date = AdminProtocol.parseTimestamp(text) else { return error(.badRequest, "since must be an ISO 8601 time") }
            since = date
        }
        var limit = AdminProtocol.maxHistoryEvents
        if let text = request.uri.queryParameters.get("limit") {
            guard let n = Int(text), n >= 1, n <= AdminProtocol.maxHistoryEvents else {
                return error(.badRequest, "limit must be a whole number from 1 to \(AdminProtocol.maxHistoryEvents)")
            }
            limit = n
        }
        let key = ConsoleKey(uuid: console.uuid, label: console.label)
        let read = services.events
        let events = try await pool.runIfActive { [since, limit] in try read(key, since, limit) }
        return json(.ok, HistoryAnswer(uuid: console.uuid, name: console.name, events: events))
    }

    static func log(_ request: Request, _ console: ConsoleInfo, _ services: APIServices,
                    _ pool: NIOThreadPool) async throws -> Response {
        guard let read = services.log else { return error(.notFound, "console logs are off (--console-log-dir off)") }
        var window: [Date?] = []
        for name in ["since", "until"] {
            guard let text = request.uri.queryParameters.get(name) else {
                window.append(nil)
                continue
            }
            guard let date = AdminProtocol.parseTimestamp(text) else { return error(.badRequest, "\(name) must be an ISO 8601 time") }
            window.append(date)
        }
        let (since, until) = (window[0], window[1])
        let key = ConsoleKey(uuid: console.uuid, label: console.label)
        let limit = maxLogBytes
        let bytes = try await pool.runIfActive { try read(key, since, until, limit) }
        guard bytes.count <= limit else {
            return error(.contentTooLarge, "more than \(limit) bytes in that window; give a narrower since/until")
        }
        return HTTPListener.response(.ok, contentType: "application/octet-stream", bytes: bytes)
    }

    /// The body of `POST .../urls`: `{"mode": "read-only" | "read-write", "ttl": seconds}`, both optional.
    struct URLBody: Decodable {
        var mode: String?
        var ttl: Int?

        init(mode: String?, ttl: Int?) {
            self.mode = mode
            self.ttl = ttl
        }

        private enum Keys: String, CodingKey { case mode, ttl }

        /// Absent fields take their defaults; a field given as `null` is refused, as the document allows none.
        init(from decoder: any Decoder) throws {
            let fields = try decoder.container(keyedBy: Keys.self)
            for key in [Keys.mode, .ttl] where fields.contains(key) {
                if try fields.decodeNil(forKey: key) {
                    throw DecodingError.valueNotFound(Any.self, .init(codingPath: [key], debugDescription: "null"))
                }
            }
            mode = try fields.decodeIfPresent(String.self, forKey: .mode)
            ttl = try fields.decodeIfPresent(Int.self, forKey: .ttl)
        }
    }

    static func mintURL(_ request: Request, _ body: ByteBuffer?, _ console: ConsoleInfo, _ token: APIToken,
                        _ services: APIServices) async -> Response {
        var fields = URLBody(mode: nil, ttl: nil)
        if let body, body.readableBytes > 0 {
            guard let decoded = try? JSONDecoder().decode(URLBody.self, from: Data(body.readableBytesView)) else {
                return error(.badRequest, "the body must be a JSON object: {\"mode\": \"read-only\" or \"read-write\", \"ttl\": seconds}")
            }
            fields = decoded
        }
        let mode = fields.mode ?? (token.readOnly ? "read-only" : "read-write")
        guard mode == "read-only" || mode == "read-write" else { return error(.badRequest, "mode must be read-only or read-write") }
        if let ttl = fields.ttl, !(1...86400).contains(ttl) { return error(.badRequest, "ttl must be a whole number of seconds from 1 to 86400") }
        if mode == "read-write", token.readOnly { return error(.forbidden, "this token is read-only: ask for mode read-only") }
        guard let mint = services.mintURL else {
            return error(.notImplemented, "console URLs cannot be minted by this vspcd yet")
        }
        let subject = request.headers[APIRequestFacts.subjectField]
        let minter = APICall.minterPrefix + token.id + (subject.map { " (\($0))" } ?? "")
        let ask = APIURLRequest(console: ConsoleKey(uuid: console.uuid, label: console.label),
                                readOnly: mode == "read-only", ttl: fields.ttl, minter: minter)
        switch await mint(ask) {
        case .success(let url): return json(.created, ["url": url])
        case .failure(let refusal): return error(.conflict, refusal.message)
        }
    }

    // MARK: answers

    /// An error's body.
    struct APIError: Encodable {
        var error: String
        var candidates: [ConsoleCandidate]?
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(status, APIError(error: message))
    }

    static func json<T: Encodable>(_ status: HTTPResponse.Status, _ value: T) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data = (try? encoder.encode(value)) ?? Data("{\"error\":\"the answer could not be encoded\"}".utf8)
        return HTTPListener.response(status, contentType: "application/json", bytes: Array(data) + [0x0A])
    }
}
