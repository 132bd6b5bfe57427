import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOHTTPTypes
import NIOCore
import NIOPosix
import VSPCCore

/// The browser console's resources on the HTTP listener: `GET /console/<token>` (the page),
/// `GET /console/<token>/ws` (its WebSocket; see `WebConsoleSocket`), and `GET /console/assets/...` (the page's
/// own script and style, and the terminal emulator read from `--web-assets`).
enum WebConsoleRoutes {
    static func add(to router: Router<BasicRequestContext>, services: HTTPServices, pool: NIOThreadPool) {
        guard let web = services.web else { return }
        func get(_ path: RouterPath, _ handler: @escaping @Sendable (Request, BasicRequestContext) async throws -> Response) {
            router.get(path, use: handler)
            router.head(path, use: handler)
        }
        get("console/assets/page.js") { _, _ in asset(WebConsolePage.script, type: "text/javascript; charset=utf-8") }
        get("console/assets/page.css") { _, _ in asset(WebConsolePage.style, type: "text/css; charset=utf-8") }
        for (name, type) in [("xterm.js", "text/javascript; charset=utf-8"), ("xterm.css", "text/css; charset=utf-8")] {
            let path = URL(fileURLWithPath: web.assets).appendingPathComponent(name).path
            get(RouterPath("console/assets/\(name)")) { _, _ in
                // Read off the loops; a missing emulator is a 404 the page explains.
                let data = try await pool.runIfActive { FileManager.default.contents(atPath: path) }
                guard let data else { return HTTPListener.text(.notFound, "\(name) is not installed in \(web.assets)\n") }
                return asset(Array(data), type: type)
            }
        }
        get("console/:token") { request, context in
            try await page(request, context, web: web)
        }
        get("console/:token/ws") { request, context in
            try await socketNotUpgraded(request, context, web: web)
        }
    }

    /// The token of `.../console/<token>/ws` (the path of a WebSocket upgrade), or nil.
    static func token(inSocketPath path: String) -> String? {
        let plain = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let parts = plain.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[parts.count - 1] == "ws", parts[parts.count - 3] == "console",
              WebConsoleSecrets.isTokenShaped(parts[parts.count - 2]) else { return nil }
        return String(parts[parts.count - 2])
    }

    /// The address rate limits count by: the peer's IP address.
    static func address(_ address: SocketAddress?) -> String { address?.ipAddress ?? "?" }

    /// The peer's address as `WebConsolePeerHeader` wrote it into the request.
    static func peerAddress(_ headers: HTTPFields) -> String { headers[WebConsolePeerHeader.name] ?? "?" }

    /// The cookie that ties a token's session to its browser: named after the token's id.
    static func cookieName(hash: String) -> String { "vspc-" + String(hash.prefix(12)) }

    /// The hash of the session cookie this request carries for the token with `hash`, if any.
    static func cookie(_ headers: HTTPFields, hash: String) -> String? {
        let name = cookieName(hash: hash)
        for header in headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == name else { continue }
                let value = parts[1].trimmingCharacters(in: .whitespaces)
                guard value.utf8.count <= 128 else { return nil }
                return WebConsoleSecrets.hash(value)
            }
        }
        return nil
    }

    static func token(_ context: BasicRequestContext) -> String? {
        guard let token = context.parameters.get("token"), WebConsoleSecrets.isTokenShaped(Substring(token)) else { return nil }
        return token
    }

    static func page(_ request: Request, _ context: BasicRequestContext, web: WebConsole) async throws -> Response {
        guard let token = token(context) else { return refused(.unknown) }
        let hash = WebConsoleSecrets.hash(token)
        let cookieValue = WebConsoleSecrets.randomText()
        let address = peerAddress(request.headers)
        switch await web.openPage(hash: hash, cookie: cookie(request.headers, hash: hash),
                                  newCookie: WebConsoleSecrets.hash(cookieValue), address: address) {
        case .failure(let refusal):
            return refused(refusal)
        case .success(let opened):
            var headers = pageHeaders(type: "text/html; charset=utf-8")
            if opened.setCookie {
                let secure = web.publicBase?.scheme == "https" ? "; Secure" : ""
                headers[.setCookie] = "\(cookieName(hash: hash))=\(cookieValue); Max-Age=86400; HttpOnly; SameSite=Strict\(secure)"
            }
            let html = WebConsolePage.html(mode: opened.grant.mode, assets: web.assets)
            return response(.ok, headers, Array(html.utf8))
        }
    }

    /// A request to the WebSocket's address that was not upgraded: why.
    static func socketNotUpgraded(_ request: Request, _ context: BasicRequestContext, web: WebConsole) async throws -> Response {
        guard let token = token(context) else { return refused(.unknown) }
        guard request.headers[.upgrade]?.lowercased() == "websocket" else {
            return HTTPListener.text(.badRequest, "this is the console's WebSocket; open the page without /ws\n")
        }
        guard WebOrigin.allows(origin: request.headers[.origin], host: request.head.authority,
                               publicBase: web.publicBase) else {
            return HTTPListener.text(.forbidden, "a console's WebSocket is opened only from its own page (Origin refused)\n")
        }
        let hash = WebConsoleSecrets.hash(token)
        let why = await web.refusal(hash: hash, cookie: cookie(request.headers, hash: hash), address: peerAddress(request.headers))
        return refused(why ?? .used)
    }

    static func refused(_ refusal: ConsoleTokens.Refusal) -> Response {
        let html = WebConsolePage.refusal(refusal.message)
        return response(HTTPResponse.Status(code: refusal.status), pageHeaders(type: "text/html; charset=utf-8"), Array(html.utf8))
    }

    /// The headers of every console resource: no inline script, no framing, no referrer, no caching.
    static func pageHeaders(type: String) -> HTTPFields {
        var headers = HTTPFields()
        headers[.contentType] = type
        headers[.contentSecurityPolicy] = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[.cacheControl] = "no-store"
        return headers
    }

    static func asset(_ bytes: [UInt8], type: String) -> Response {
        var headers = pageHeaders(type: type)
        headers[.cacheControl] = "no-cache"
        return response(.ok, headers, bytes)
    }

    static func asset(_ text: String, type: String) -> Response { asset(Array(text.utf8), type: type) }

    static func response(_ status: HTTPResponse.Status, _ headers: HTTPFields, _ bytes: [UInt8]) -> Response {
        var headers = headers
        headers[.contentLength] = String(bytes.count)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// Writes the connection's peer address into each request's head (replacing any such header the client sent),
/// so that the console's routes can count requests and failed tokens per address.
final class WebConsolePeerHeader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    static let name = HTTPField.Name("X-VSPCd-Peer-Address")!

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else { return context.fireChannelRead(data) }
        head.headerFields[Self.name] = nil
        head.headerFields[Self.name] = WebConsoleRoutes.address(context.channel.remoteAddress)
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }
}
