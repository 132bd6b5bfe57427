import Foundation
import XCTest

/// The committed man pages and completions (contrib/generate-docs.sh writes them): what a reader and a shell
/// are offered.
final class DocsTests: XCTestCase {
    func contrib(_ path: String) throws -> String {
        try String(contentsOf: InstallTests.repository.appendingPathComponent("contrib/\(path)"), encoding: .utf8)
    }

    func testVspcdsManualHasNoSubcommands() throws {
        let page = try contrib("man/vspcd.1")
        let synopsis = page.components(separatedBy: ".Sh SYNOPSIS\n").last?.components(separatedBy: ".Sh ").first ?? ""
        XCTAssertTrue(synopsis.hasPrefix(".Nm\n.Op Fl -config Ar path\n"), synopsis)
        XCTAssertFalse(page.contains("subcommand"), page)
        XCTAssertFalse(page.contains(".It Em help"), page)
    }

    func testVspcsManualShowsTheDefaults() throws {
        let page = try contrib("man/vspc.1")
        XCTAssertTrue(page.contains("for its Unix socket. (default: 127.0.0.1:6780)"), page)
        XCTAssertTrue(page.contains("when the daemon is down. (default: vspcd.db)"), page)
    }

    /// The bash completion's arm for `option`: what it offers after the option.
    func bashArm(_ script: String, _ option: String) -> String {
        guard let start = script.range(of: "    '\(option)')\n") else { return "(no arm for \(option))" }
        return String(script[start.upperBound...].prefix { $0 != ";" })
    }

    func testBashCompletionOffersFilesAndValues() throws {
        let vspcd = try contrib("completions/vspcd.bash")
        for option in ["--config", "--db", "--ssh-host-key", "--ssh-authorized-keys", "--ssl-cert", "--ssl-key"] {
            XCTAssertTrue(bashArm(vspcd, option).contains("_add_completions -f\n"), "\(option): \(bashArm(vspcd, option))")
        }
        XCTAssertTrue(bashArm(vspcd, "--telnet-ports").contains("-W 'read-write'$'\\n''read-only'$'\\n''off'"),
                      bashArm(vspcd, "--telnet-ports"))
        XCTAssertTrue(bashArm(vspcd, "--log-format").contains("-W 'text'$'\\n''json'"), bashArm(vspcd, "--log-format"))
        let vspc = try contrib("completions/vspc.bash")
        XCTAssertTrue(bashArm(vspc, "--db").contains("_add_completions -f\n"), bashArm(vspc, "--db"))
    }
}
