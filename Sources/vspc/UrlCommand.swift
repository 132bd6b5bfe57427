import ArgumentParser
import Foundation
import VSPCClient
import VSPCCore

/// `vspc url VM`: a one-time link that opens the console in a browser.
struct URLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "url",
        abstract: "Print a one-time URL that opens a VM's console in a browser.",
        discussion: """
        The daemon mints a token (only its hash is kept) bound to this console and mode; the URL opens one \
        browser session, until it expires. Reloading the page within a minute resumes the session in the same \
        browser only. Needs vspcd's --http listener; the URL's base is --http-public-url when vspcd sits behind \
        a reverse proxy. Who minted it is recorded (over a Unix socket, your uid and user name).
        """)

    @Argument(help: "VM name, uuid in any spelling, or a unique prefix of either.")
    var vm: String

    @OptionGroup var admin: AdminOption
    @Option(help: "Serial-port label, for a VM's second serial port.") var label: String?
    @Flag(help: "A read-only session: the page shows the console and sends nothing.") var readOnly = false
    @Option(help: "How long the URL may be opened: 90s, 10m, 2h (at most 24h).", transform: { try URLCommand.seconds($0) })
    var ttl: Int = AdminProtocol.defaultURLTTL
    @Flag(help: "JSON: the URL, its token's id, when it expires, the console.") var json = false

    /// `90`, `90s`, `10m`, `2h`: seconds, from 1 to 24 hours.
    static func seconds(_ text: String) throws -> Int {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var digits = Substring(text)
        var unit = 1
        if let last = text.last, let factor = units[last] {
            digits = digits.dropLast()
            unit = factor
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let n = Int(digits), n > 0,
              n <= ConsoleTokens.maxTTL / unit else {
            throw ValidationError("--ttl must be a duration from 1s to 24h, like 90s, 10m or 2h; got \(text.debugDescription)")
        }
        return n * unit
    }

    func run() async throws {
        let response = try await admin.request(AdminRequest(command: "url", vm: vm, label: label,
                                                            readOnly: readOnly, ttl: ttl))
        guard let url = response.url else { throw fail("the daemon sent no URL (is it older than vspc?)") }
        if json {
            struct Answer: Encodable {
                var url: String
                var tokenID: String?
                var expires: String?
                var mode: AccessMode?
                var vm: ConsoleInfo?
            }
            return try printJSON(Answer(url: url, tokenID: response.tokenID, expires: response.expires,
                                        mode: response.mode, vm: response.vm))
        }
        print(url)
    }
}
