@testable import vspcd
import VSPCCore
import XCTest

/// The TOML layer of `--config`: values and the lines they are on.
final class ConfigFileTests: XCTestCase {
    func parse(_ text: String) throws -> [String: FileSetting] {
        let contents = try ConfigFile.parse(text, path: "t.toml")
        return Dictionary(uniqueKeysWithValues: contents.settings.map { ($0.key, $0) })
    }

    func testValuesAndLines() throws {
        let settings = try parse("""
        # vspcd
        proxy = ":6779"   # ESXi

        "listen-host" = '0.0.0.0'
        port-range-start = 20_000
        vm-expire-time = 3600.5
          ssl = false
        db = \"\"\"
        /var/lib/vspcd/vspcd.db\"\"\"
        """)
        XCTAssertEqual(settings["proxy"], FileSetting(key: "proxy", value: .string(":6779"), line: 2))
        XCTAssertEqual(settings["listen-host"], FileSetting(key: "listen-host", value: .string("0.0.0.0"), line: 4))
        XCTAssertEqual(settings["port-range-start"], FileSetting(key: "port-range-start", value: .integer(20000), line: 5))
        XCTAssertEqual(settings["vm-expire-time"], FileSetting(key: "vm-expire-time", value: .number(3600.5), line: 6))
        XCTAssertEqual(settings["ssl"], FileSetting(key: "ssl", value: .bool(false), line: 7))
        XCTAssertEqual(settings["db"], FileSetting(key: "db", value: .string("/var/lib/vspcd/vspcd.db"), line: 8))
    }

    func testErrorsNameTheLine() {
        let cases: [(String, String)] = [
            ("proxy = \":1\"\nprox = 2\n", "t.toml:2: unknown key \"prox\" (did you mean proxy?)"),
            ("db = \"x\"\n\n[proxy]\nhost = 1\n", "t.toml:3: proxy must be a string, not a table"),
            ("db = \"x\"\n[telemetry]\nport = 1\n", "t.toml:2: unknown key \"telemetry\""),
            ("admin.host = \"x\"\n", "t.toml:1: admin must be a string, not a table"),
            ("proxy = [\":1\"]\n", "t.toml:1: proxy must be a string, not an array"),
            ("vm-expire-time = 2026-11-25\n", "t.toml:1: vm-expire-time must be a number, not a date or time"),
            ("proxy = \":1\"\nproxy = \":2\"\n", "t.toml:2:9: Error while parsing key-value pair: cannot redefine existing string"),
            ("proxy = \n", "t.toml:1:"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try ConfigFile.parse(text, path: "t.toml"), text) {
                XCTAssertTrue("\($0)".hasPrefix(message), "\(text): \($0)")
            }
        }
    }

    func testARepeatableFlagTakesAnArrayOfStrings() throws {
        let text = "db = \"x\"\nwatch = [\"panic=Kernel panic - not syncing\", \"oops=Oops:|BUG:|Call Trace:\"]\n"
        let file = try ConfigFile.parse(text, path: "t.toml")
        let resolved = try DaemonSettings.resolve(file: file, commandLine: [:])
        XCTAssertEqual(resolved.settings.watch, ["panic=Kernel panic - not syncing", "oops=Oops:|BUG:|Call Trace:"])
        // One string is a list of one; an array of something else, or a broken pattern, names the line.
        let one = try DaemonSettings.resolve(file: try ConfigFile.parse("watch = \"panic=panic\"\n", path: "t.toml"), commandLine: [:])
        XCTAssertEqual(one.settings.watch, ["panic=panic"])
        XCTAssertThrowsError(try ConfigFile.parse("db = \"x\"\nwatch = [1, 2]\n", path: "t.toml")) {
            XCTAssertEqual("\($0)", "t.toml:2: watch must be an array of strings")
        }
        XCTAssertThrowsError(try DaemonSettings.resolve(file: try ConfigFile.parse("watch = [\"a=(\"]\n", path: "t.toml"), commandLine: [:])) {
            XCTAssertTrue("\($0)".hasPrefix("t.toml:1: watch has a REGEX that does not compile: "), "\($0)")
        }
        // The command line's --watch flags replace the file's.
        let both = try DaemonSettings.resolve(file: file, commandLine: ["watch": .list(["x=y"])])
        XCTAssertEqual(both.settings.watch, ["x=y"])
    }

    func testMetricsIsAnAliasOfHTTP() throws {
        let alias = try DaemonSettings.resolve(file: nil, commandLine: ["metrics": .string(":9779")])
        XCTAssertEqual(alias.settings.metrics, ":9779")
        XCTAssertNoThrow(try DaemonSettings.resolve(file: nil, commandLine: ["metrics": .string(":9779"), "http": .string(":9779")]))
        XCTAssertThrowsError(try DaemonSettings.resolve(file: nil, commandLine: ["metrics": .string(":9779"), "http": .string(":9780")])) {
            XCTAssertEqual("\($0)", "--metrics is another name for --http; give one of them")
        }
    }

    func testTypeAndRangeErrorsFromTheFileNameItsLine() throws {
        let file = try ConfigFile.parse("db = \"x\"\n\nport-range-end = \"32767\"\n", path: "t.toml")
        XCTAssertThrowsError(try DaemonSettings.resolve(file: file, commandLine: [:])) {
            XCTAssertEqual("\($0)", "t.toml:3: port-range-end must be an integer, not a string")
        }
    }

    func testAMissingOrHugeFileIsAClearError() throws {
        XCTAssertThrowsError(try ConfigFile.read(path: "/nonexistent/vspcd.toml")) {
            XCTAssertEqual("\($0)", "config file /nonexistent/vspcd.toml does not exist")
        }
        let big = FileManager.default.temporaryDirectory.appendingPathComponent("big-\(UUID().uuidString).toml")
        try Data(repeating: 0x23, count: ConfigFile.maxBytes + 1).write(to: big)
        defer { try? FileManager.default.removeItem(at: big) }
        XCTAssertThrowsError(try ConfigFile.read(path: big.path)) {
            XCTAssertTrue("\($0)".contains("is larger than"), "\($0)")
        }
    }

    /// The sample's commented `key = value` lines are what contrib/update-sample-config.sh writes from
    /// `vspcd --print-defaults` (`DaemonSettings.defaultLines`): running it changes nothing. (Its awk also leaves
    /// a key the sample sets, uncommented, alone.)
    func testTheSampleConfigShowsTheGeneratedDefaults() throws {
        let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("contrib/vspcd.toml")
        let lines = try String(contentsOf: sample, encoding: .utf8).split(separator: "\n").map(String.init)
        for line in DaemonSettings.defaultLines {
            // A key the sample sets (an uncommented line, as `db`) shows its example, not the default.
            let key = String(line.prefix { $0 != " " })
            if lines.contains(where: { $0.hasPrefix(key + " = ") }) { continue }
            XCTAssertTrue(lines.contains("# " + line), "contrib/vspcd.toml lacks \"# \(line)\": run contrib/update-sample-config.sh")
        }
        XCTAssertEqual(DaemonSettings.defaultLines.count, DaemonSettings.keys.filter { DaemonSettings().value(of: $0.name) != nil }.count)
    }

    func testTheSampleConfigIsValidAndHoldsEveryKeyAtItsDefault() throws {
        let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("contrib/vspcd.toml")
        let text = try String(contentsOf: sample, encoding: .utf8)
        // Uncomment every "# key = value" line: the sample lists every key with its default.
        let uncommented = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            if line.hasPrefix("#"), let key = ConfigFile.leadingKey(line.dropFirst().drop { $0 == " " }),
               DaemonSettings.key(named: key) != nil {
                return String(line.dropFirst().drop { $0 == " " })
            }
            return String(line)
        }.joined(separator: "\n")
        let contents = try ConfigFile.parse(uncommented, path: sample.path)
        XCTAssertEqual(Set(contents.settings.map(\.key)), Set(DaemonSettings.keys.map(\.name)))
        var expected = DaemonSettings()
        expected.db = "/var/lib/vspcd/vspcd.db"
        expected.sslCert = "/etc/vspcd/cert.pem"
        expected.sslKey = "/etc/vspcd/key.pem"
        expected.proxyAllow = "10.20.0.0/16,fd00:20::/48"
        expected.metrics = "127.0.0.1:9779"
        expected.http = "127.0.0.1:9779"
        expected.consoleLogDir = "/var/lib/vspcd/consoles"
        expected.consoleLogGroup = "nova"
        expected.httpCert = "/etc/vspcd/http-cert.pem"
        expected.httpKey = "/etc/vspcd/http-key.pem"
        expected.httpClientCa = "/etc/vspcd/http-client-ca.pem"
        expected.httpPublicURL = "https://vspc.example.com"
        expected.ssh = ":6781"
        expected.sshHostKey = "/var/lib/vspcd/ssh_host_ed25519_key"
        expected.sshAuthorizedKeys = "/var/lib/vspcd/authorized_keys"
        expected.node = "vspc-a"
        expected.clusterListen = "10.0.0.11:6782"
        expected.clusterCert = "/etc/vspcd/cluster-cert.pem"
        expected.clusterKey = "/etc/vspcd/cluster-key.pem"
        expected.clusterCa = "/etc/vspcd/cluster-ca.pem"
        // ssl stays false, so the certificate keys must stay commented out in real use: check them apart.
        let withoutCert = ConfigFileContents(path: contents.path, settings: contents.settings.filter { !$0.key.hasPrefix("ssl-") })
        XCTAssertEqual(try DaemonSettings.resolve(file: withoutCert, commandLine: [:]).settings.db, expected.db)
        for setting in contents.settings {
            XCTAssertEqual(DaemonSettings.key(named: setting.key)!.kind.coerce(setting.value), expected.value(of: setting.key), setting.key)
        }
        // A key with a built-in default shows that default; the SSH files show theirs, beside the database.
        for setting in contents.settings where setting.key != "db" {
            guard let value = DaemonSettings.key(named: setting.key)?.kind.coerce(setting.value) else { continue }
            if DaemonSettings().value(of: setting.key) != nil {
                XCTAssertEqual(value, DaemonSettings().value(of: setting.key), "\(setting.key) shows its default")
            }
        }
        let beside = (expected.db as NSString).deletingLastPathComponent
        XCTAssertEqual(expected.sshHostKey, beside + "/ssh_host_ed25519_key")
        XCTAssertEqual(expected.sshAuthorizedKeys, beside + "/authorized_keys")
        // The header names exactly the keys that a reload applies at once.
        let header = text.split(separator: "\n").prefix { $0.hasPrefix("#") }
            .map { $0.dropFirst().trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        let marker = "These keys take effect at once: "
        let list = header.range(of: marker).map { header[$0.upperBound...].prefix { $0 != ";" } } ?? ""
        XCTAssertEqual(Set(list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }),
                       Set(DaemonSettings.keys.filter(\.live).map(\.name)), header)
        // As shipped (everything commented out but db), the sample starts the daemon with the defaults.
        let shipped = try DaemonSettings.resolve(file: try ConfigFile.parse(text, path: sample.path), commandLine: [:])
        XCTAssertEqual(shipped.settings, { var s = DaemonSettings(); s.db = expected.db; return s }())
    }
}
