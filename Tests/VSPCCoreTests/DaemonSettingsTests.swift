import VSPCCore
import XCTest

final class DaemonSettingsTests: XCTestCase {
    let path = "/etc/vspcd/vspcd.toml"

    func file(_ entries: [(String, SettingValue, Int)]) -> ConfigFileContents {
        ConfigFileContents(path: path, settings: entries.map { FileSetting(key: $0.0, value: $0.1, line: $0.2) })
    }

    func testDefaultsThenFileThenCommandLine() throws {
        let none = try DaemonSettings.resolve(file: nil, commandLine: [:])
        XCTAssertEqual(none.settings, DaemonSettings())
        XCTAssertEqual(none.source(of: "proxy"), .builtIn)

        let resolved = try DaemonSettings.resolve(
            file: file([("proxy", .string(":7000"), 1), ("scrollback", .integer(0), 2), ("verbose", .bool(true), 3),
                        ("vm-expire-time", .integer(3600), 4)]),
            commandLine: ["proxy": .string("127.0.0.1:7001"), "db": .string("/var/lib/vspcd/vspcd.db")])
        XCTAssertEqual(resolved.settings.proxy, "127.0.0.1:7001")
        XCTAssertEqual(resolved.source(of: "proxy"), .commandLine)
        XCTAssertEqual(resolved.settings.scrollback, 0)
        XCTAssertEqual(resolved.source(of: "scrollback"), .file(path: path, line: 2))
        XCTAssertTrue(resolved.settings.verbose)
        XCTAssertEqual(resolved.settings.vmExpireTime, 3600, "a number key takes an integer")
        XCTAssertEqual(resolved.settings.db, "/var/lib/vspcd/vspcd.db")
        XCTAssertEqual(resolved.settings.admin, "127.0.0.1:6780")
        XCTAssertEqual(resolved.settings.verbosity, .info)
    }

    func testUnknownKeyNamesFileAndLineAndSuggests() {
        XCTAssertThrowsError(try DaemonSettings.resolve(file: file([("proxy", .string(":1"), 1), ("prox", .integer(1), 7)]), commandLine: [:])) {
            XCTAssertEqual("\($0)", "/etc/vspcd/vspcd.toml:7: unknown key \"prox\" (did you mean proxy?)")
        }
        XCTAssertThrowsError(try DaemonSettings.resolve(file: file([("colour", .bool(true), 2)]), commandLine: [:])) {
            XCTAssertEqual("\($0)", "/etc/vspcd/vspcd.toml:2: unknown key \"colour\"")
        }
    }

    func testWrongTypeAndOutOfRangeNameTheLine() {
        let cases: [((String, SettingValue, Int), String)] = [
            (("port-range-start", .string("20000"), 3), "/etc/vspcd/vspcd.toml:3: port-range-start must be an integer, not a string"),
            (("port-range-start", .number(20000.5), 3), "/etc/vspcd/vspcd.toml:3: port-range-start must be an integer, not a number"),
            (("port-range-end", .integer(70000), 4), "/etc/vspcd/vspcd.toml:4: port-range-end must be between 1 and 65535 (got 70000)"),
            (("ssl", .string("yes"), 5), "/etc/vspcd/vspcd.toml:5: ssl must be true or false, not a string"),
            (("vm-expire-time", .integer(0), 6), "/etc/vspcd/vspcd.toml:6: vm-expire-time must be more than 0 and at most 3153600000 seconds (got 0)"),
            (("log-format", .string("xml"), 7), "/etc/vspcd/vspcd.toml:7: log-format must be text or json (got \"xml\")"),
            (("service-uri", .string("a?b"), 8), "/etc/vspcd/vspcd.toml:8: service-uri must be a plain name such as vSPC.py (got \"a?b\")"),
            (("event-max-age-days", .number(-1), 9), "/etc/vspcd/vspcd.toml:9: event-max-age-days must be between 0 and 36500 days (got -1)"),
            (("vmotion-timeout", .number(.infinity), 2), "/etc/vspcd/vspcd.toml:2: vmotion-timeout must be a finite number (got inf)"),
        ]
        for (entry, message) in cases {
            XCTAssertThrowsError(try DaemonSettings.resolve(file: file([entry]), commandLine: [:])) {
                XCTAssertEqual("\($0)", message)
            }
        }
    }

    /// Issue 15 item 6: a bad network is quoted once, not echoed again by "(got ...)".
    func testBadNetworkIsQuotedOnce() {
        XCTAssertThrowsError(try DaemonSettings.resolve(file: nil, commandLine: ["proxy-allow": .string("10.0.0.0/33")])) {
            XCTAssertEqual("\($0)", "--proxy-allow has an entry that is not an IPv4 or IPv6 network: \"10.0.0.0/33\"")
        }
        XCTAssertThrowsError(try DaemonSettings.resolve(file: nil, commandLine: ["proxy-allow": .string("10.0.0.0/8,10.1.0.0/33")])) {
            XCTAssertEqual("\($0)", "--proxy-allow has an entry that is not an IPv4 or IPv6 network: \"10.1.0.0/33\" (got \"10.0.0.0/8,10.1.0.0/33\")")
        }
    }

    func testCommandLineErrorsNameTheFlag() {
        XCTAssertThrowsError(try DaemonSettings.resolve(file: nil, commandLine: ["scrollback": .integer(-1)])) {
            XCTAssertEqual("\($0)", "--scrollback must be between 0 and 67108864 (got -1)")
        }
        XCTAssertThrowsError(try DaemonSettings.resolve(file: nil, commandLine: ["ssl": .bool(true)])) {
            XCTAssertEqual("\($0)", "--ssl needs --ssl-cert PEM and --ssl-key PEM")
        }
    }

    func testChecksAcrossKeysNameWhereTheValueCameFrom() {
        XCTAssertThrowsError(try DaemonSettings.resolve(
            file: file([("port-range-start", .integer(30000), 2), ("port-range-end", .integer(29999), 3)]), commandLine: [:])) {
            XCTAssertEqual("\($0)", "/etc/vspcd/vspcd.toml:3: port-range-end makes an empty port range: start <= end is needed (got 30000-29999)")
        }
        XCTAssertThrowsError(try DaemonSettings.resolve(file: file([("replay", .integer(100), 4)]), commandLine: ["scrollback": .integer(10)])) {
            XCTAssertEqual("\($0)", "/etc/vspcd/vspcd.toml:4: replay must not be more than scrollback (10)")
        }
        XCTAssertThrowsError(try DaemonSettings.resolve(file: file([("ssl", .bool(true), 1)]), commandLine: [:])) {
            XCTAssertEqual("\($0)", "/etc/vspcd/vspcd.toml:1: ssl needs ssl-cert PEM and ssl-key PEM")
        }
        XCTAssertThrowsError(try DaemonSettings.resolve(file: file([("ssl-key", .string("k.pem"), 9)]), commandLine: [:])) {
            XCTAssertEqual("\($0)", "/etc/vspcd/vspcd.toml:9: ssl-key is only used with ssl")
        }
        // The command line can complete what the file starts.
        XCTAssertNoThrow(try DaemonSettings.resolve(file: file([("ssl", .bool(true), 1)]),
                                                    commandLine: ["ssl-cert": .string("c.pem"), "ssl-key": .string("k.pem")]))
    }

    func testEveryKeyHasItsDefaultAndAUniqueName() {
        let names = DaemonSettings.keys.map(\.name)
        XCTAssertEqual(Set(names).count, names.count)
        for name in names where !["ssl-cert", "ssl-key", "proxy-allow", "metrics", "ssh", "ssh-host-key", "ssh-authorized-keys",
                                             "console-log-dir", "console-log-group", "http", "http-cert", "http-key",
                                             "http-client-ca", "http-public-url", "node", "cluster-listen", "cluster-cert",
                                             "cluster-key", "cluster-ca"].contains(name) {
            XCTAssertNotNil(DaemonSettings().value(of: name), name)
        }
        XCTAssertEqual(DaemonSettings.defaultText("proxy"), ":6779")
        XCTAssertEqual(DaemonSettings.defaultText("vm-expire-time"), "86400")
        XCTAssertEqual(DaemonSettings.defaultText("ssl"), "false")
        XCTAssertEqual(DaemonSettings.defaultText("ssl-cert"), "none")
        XCTAssertEqual(Set(DaemonSettings.keys.filter(\.live).map(\.name)),
                       ["vm-expire-time", "event-max-age-days", "event-max-count", "verbose", "debug", "proxy-allow"])
    }

    func testReloadAppliesLiveKeysAndNamesTheRest() {
        var running = DaemonSettings()
        running.proxy = ":6779"
        var reloaded = running
        reloaded.verbose = true
        reloaded.proxy = ":7000"
        reloaded.vmExpireTime = 3600
        reloaded.db = "/elsewhere.db"
        let plan = DaemonSettings.planReload(running: running, reloaded: reloaded)
        XCTAssertEqual(plan.summary, "reloaded: vm-expire-time 86400 -> 3600, verbose false -> true; needs a restart: proxy, db")
        XCTAssertTrue(plan.changesLive)
        XCTAssertEqual(plan.settings.proxy, ":6779", "a restart-only key keeps its running value")
        XCTAssertEqual(plan.settings.db, "vspcd.db")
        XCTAssertEqual(plan.settings.vmExpireTime, 3600)
        XCTAssertEqual(plan.settings.reloadable,
                       ReloadableSettings(verbosity: .info, vmExpireTime: 3600, eventMaxAgeDays: 90, eventMaxCount: 1_000_000))

        let again = DaemonSettings.planReload(running: plan.settings, reloaded: reloaded)
        XCTAssertEqual(again.summary, "reloaded: no change; needs a restart: proxy, db")
        XCTAssertFalse(again.changesLive)

        var onlyLevel = DaemonSettings()
        onlyLevel.verbose = true
        XCTAssertEqual(DaemonSettings.planReload(running: DaemonSettings(), reloaded: onlyLevel).summary,
                       "reloaded: verbose false -> true")
        XCTAssertEqual(DaemonSettings.planReload(running: DaemonSettings(), reloaded: DaemonSettings()).summary, "reloaded: no change")

        var withCert = DaemonSettings()
        withCert.sslCert = "/etc/c\"ert\n.pem"
        XCTAssertEqual(DaemonSettings.planReload(running: DaemonSettings(), reloaded: withCert).needsRestart, ["ssl-cert"])
        XCTAssertEqual(SettingChange(key: "ssl-cert", old: nil, new: .string("/etc/c\"ert\n.pem")).description,
                       "ssl-cert (unset) -> \"/etc/c\\\"ert\\x0a.pem\"")
    }

    func testRetentionAndVerbosity() {
        var s = DaemonSettings()
        s.eventMaxAgeDays = 0
        s.eventMaxCount = 0
        XCTAssertNil(s.reloadable.retentionMaxAgeSeconds)
        XCTAssertNil(s.reloadable.retentionMaxCount)
        s.eventMaxAgeDays = 2
        s.eventMaxCount = 5
        XCTAssertEqual(s.reloadable.retentionMaxAgeSeconds, 172_800)
        XCTAssertEqual(s.reloadable.retentionMaxCount, 5)
        s.debug = true
        XCTAssertEqual(s.verbosity, .debug)
        s.debug = false
        XCTAssertEqual(s.verbosity, .notice)
    }
}
