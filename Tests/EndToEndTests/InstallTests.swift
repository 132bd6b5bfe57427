import Foundation
import VSPCCore
import XCTest

/// contrib/install.sh into a temporary DESTDIR: the files, their modes, and a working binary.
final class InstallTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testInstallScriptIntoADestdir() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-install-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let script = Self.repository.appendingPathComponent("contrib/install.sh").path
        let result = try run("/bin/bash", [script, "--destdir", root.path, "--bin-dir", Daemon.binDirectory.path])
        XCTAssertEqual(result.status, 0, result.output)

        let expected: [(String, Int)] = [
            ("usr/local/bin/vspcd", 0o755), ("usr/local/bin/vspc", 0o755),
            ("etc/systemd/system/vspcd.service", 0o644), ("etc/vspcd/vspcd.toml", 0o644),
            ("usr/local/share/man/man1/vspcd.1", 0o644), ("usr/local/share/man/man1/vspc.1", 0o644),
            ("usr/local/share/bash-completion/completions/vspcd", 0o644),
            ("usr/local/share/bash-completion/completions/vspc", 0o644),
            ("usr/local/share/zsh/site-functions/_vspcd", 0o644), ("usr/local/share/zsh/site-functions/_vspc", 0o644),
            ("usr/local/share/fish/vendor_completions.d/vspcd.fish", 0o644),
            ("usr/local/share/fish/vendor_completions.d/vspc.fish", 0o644),
        ]
        for (path, mode) in expected {
            let attributes = try FileManager.default.attributesOfItem(atPath: root.appendingPathComponent(path).path)
            XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, mode, path)
            XCTAssertEqual(attributes[.type] as? FileAttributeType, .typeRegular, path)
        }
        XCTAssertEqual(try Data(contentsOf: root.appendingPathComponent("etc/systemd/system/vspcd.service")),
                       try Data(contentsOf: Self.repository.appendingPathComponent("contrib/systemd/vspcd.service")))
        for tool in ["vspcd", "vspc"] {
            let version = try run(root.appendingPathComponent("usr/local/bin/\(tool)").path, ["--version"])
            XCTAssertEqual(version.status, 0)
            XCTAssertEqual(version.output, "\(VSPCVersion.current)\n")
        }

        let config = root.appendingPathComponent("etc/vspcd/vspcd.toml").path
        // A second run keeps an edited config.
        try "verbose = true\n".write(toFile: config, atomically: true, encoding: .utf8)
        let again = try run("/bin/bash", [script, "--destdir", root.path, "--bin-dir", Daemon.binDirectory.path])
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertEqual(try String(contentsOfFile: config, encoding: .utf8), "verbose = true\n")
        XCTAssertTrue(again.output.contains("kept the existing"), again.output)
    }

    func testTheUnitPassesSystemdAnalyzeVerify() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else {
            throw XCTSkip("systemd-analyze is not installed (Debian's systemd package)")
        }
        // verify checks that ExecStart exists: point it at the built binary in a copy of the unit.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-unit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let unit = try String(contentsOf: Self.repository.appendingPathComponent("contrib/systemd/vspcd.service"), encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/vspcd", with: Daemon.binary("vspcd"))
            .replacingOccurrences(of: "Documentation=man:vspcd(1)\n", with: "")
        let path = dir.appendingPathComponent("vspcd.service").path
        try unit.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try run("/usr/bin/systemd-analyze", ["verify", path])
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertEqual(result.output, "", "systemd-analyze has no complaint")
    }
}
