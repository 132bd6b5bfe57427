import ArgumentParser
import Crypto
import Foundation
import VSPCCore

/// `vspc token create|list|revoke`: the JSON API's tokens, kept by the daemon (over the admin endpoint, so that
/// the running daemon knows at once).
struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and revoke API tokens for vspcd's JSON API (/api/v1 on --http).",
        subcommands: [TokenCreate.self, TokenList.self, TokenRevoke.self])
}

struct TokenCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Make a new API token and print it, once.",
        discussion: """
        The token is made here (256 random bits) and printed once; vspcd and its database keep only its SHA-256. \
        Give it as `Authorization: Bearer TOKEN`. Its id (first line on stderr) names it in `vspc token list`, \
        `vspc token revoke` and the audit (api-call events).
        """)

    @OptionGroup var admin: AdminOption
    @Option(help: ArgumentHelp("Only the consoles of VMs matching these globs (comma-separated; `*`, `?`; uuid:GLOB matches the uuid), as an SSH key's vms=.", valueName: "glob,..."))
    var vms: String?
    @Flag(help: "No console URL that can write.") var readOnly = false
    @Option(help: ArgumentHelp("Expire after this long: seconds, or a number with s, m, h or d (e.g. 90d). Default: never.", valueName: "duration"))
    var ttl: String?
    @Option(help: "A note for people (who has it, what for).") var comment: String?

    func run() async throws {
        var ttlSeconds: Double?
        if let ttl {
            guard let seconds = Self.duration(ttl) else {
                throw ValidationError("--ttl must be a number of seconds, or a number with s, m, h or d, got \(ttl.debugDescription)")
            }
            ttlSeconds = seconds
        }
        let globs = vms.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        let token = Self.newToken()
        var request = AdminRequest(command: "token-create")
        request.tokenHash = Self.hash(token)
        request.vms = globs
        request.tokenReadOnly = readOnly
        request.tokenTTL = ttlSeconds
        request.comment = comment
        let response = try await admin.request(request)
        guard let info = response.token else { throw fail("the daemon sent no token") }
        FileHandle.standardError.write(Data("token \(info.id) created; it is shown only now:\n".utf8))
        print(token)
    }

    /// `vspc_` and 43 base64url characters: 256 bits from the system's random generator.
    static func newToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let text = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return APIToken.prefix + text
    }

    static func hash(_ token: String) -> String {
        SHA256.hash(data: Array(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// `90`, `90s`, `10m`, `12h`, `30d` as seconds; nil when not one.
    static func duration(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var number = Substring(text)
        var unit = 1.0
        if let last = text.last, let u = units[last] {
            unit = u
            number = number.dropLast()
        }
        guard let value = Double(number), value > 0, value.isFinite else { return nil }
        return value * unit
    }
}

struct TokenList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the API tokens (never the tokens themselves).")

    @OptionGroup var admin: AdminOption
    @Flag(help: "JSON, one object per token.") var json = false

    func run() async throws {
        let tokens = try await admin.request(AdminRequest(command: "token-list")).tokens ?? []
        if json {
            try printJSON(tokens)
            return
        }
        var rows = [["ID", "STATE", "VMS", "MODE", "CREATED", "EXPIRES", "COMMENT"]]
        for t in tokens {
            rows.append([t.id, t.state, show(t.vms.isEmpty ? "*" : t.vms.joined(separator: ",")),
                         t.readOnly ? "read-only" : "read-write", localTime(t.createdAt),
                         t.expiresAt.map { localTime($0) } ?? "never", show(t.comment)])
        }
        printTable(rows)
    }
}

struct TokenRevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke an API token: it stops working at once.")

    @Argument(help: "The token's id (vspc token list).") var id: String
    @OptionGroup var admin: AdminOption

    func run() async throws {
        var request = AdminRequest(command: "token-revoke")
        request.token = id
        let response = try await admin.request(request)
        print("token \(response.token?.id ?? id) revoked")
    }
}
