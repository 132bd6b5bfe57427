import Foundation
import VSPCCore
import XCTest
@testable import vspcd

/// contrib/watch-patterns.toml is a config file fragment: it parses, every pattern compiles, and each matches a
/// line of the kind it is for (and none matches an ordinary boot line).
final class WatchPatternSampleTests: XCTestCase {
    static let samples: [String: String] = [
        "panic": "[   12.345678] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
        "oops": "[  101.000001] BUG: unable to handle page fault for address: ffff8880deadbeef",
        "oom": "[ 5120.1] Out of memory: Killed process 1234 (java) total-vm:8000000kB",
        "hung": "[  245.7] INFO: task jbd2/sda1-8:312 blocked for more than 120 seconds.",
        "lockup": "[  88.1] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [kworker/1:2:123]",
        "fs": "[  31.2] EXT4-fs error (device sda1): ext4_find_entry:1455: inode #2: comm ls: reading directory lblock 0",
        "disk": "[  77.7] blk_update_request: I/O error, dev sdb, sector 2048 op 0x0:(READ)",
        "mce": "[ 900.0] mce: [Hardware Error]: Machine check events logged",
        "emergency": "You are in emergency mode. After logging in, type \"journalctl -xb\" to view",
        "bugcheck": "<INSTANCE CLASSNAME=\"BLUESCREEN\"><PROPERTY NAME=\"STOPCODE\" TYPE=\"string\"><VALUE>\"0x7B\"</VALUE>",
        "psod": "2026-12-02T03:00:01.123Z cpu3:2097152)@BlueScreen: #PF Exception 14 in world 2097152:vmm0:vm IP 0x0",
    ]

    func testTheSampleParsesAndEachPatternMatchesItsKind() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("contrib/watch-patterns.toml").path
        let resolved = try DaemonSettings.resolve(file: try ConfigFile.read(path: path), commandLine: [:])
        let patterns = try WatchPattern.parseAll(resolved.settings.watch).get()
        XCTAssertEqual(Set(patterns.map(\.name)), Set(Self.samples.keys))
        let ordinary = "[    0.352101] printk: console [ttyS0] enabled"
        for pattern in patterns {
            let matcher = try LineMatcher(pattern: pattern.regex)
            let sample = try XCTUnwrap(Self.samples[pattern.name])
            XCTAssertTrue(matcher.matches(Array(sample.utf8)), "\(pattern.name) does not match its sample")
            XCTAssertFalse(matcher.matches(Array(ordinary.utf8)), "\(pattern.name) matches an ordinary line")
        }
    }
}
