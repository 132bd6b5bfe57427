import Foundation

/// What a person may do on a console.
public enum AccessMode: String, Sendable, Codable {
    case readWrite = "read-write"
    case readOnly = "read-only"
}

/// Who an SSH session is: its key's comment and SHA256 fingerprint.
public struct Identity: Sendable, Equatable {
    public var comment: String
    public var fingerprint: String
    public init(comment: String, fingerprint: String) {
        self.comment = comment
        self.fingerprint = fingerprint
    }
}

/// `--telnet-ports`: the per-VM telnet ports are read-write (as vSPC.py), read-only, or not opened at all.
public enum TelnetPortsMode: String, Sendable, CaseIterable {
    case readWrite = "read-write"
    case readOnly = "read-only"
    case off
}
