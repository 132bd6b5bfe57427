/// VMware's telnet extension (option 232): sub-command codes and message encoding.
public enum VMwareCommand {
    public static let knownSuboptions1: UInt8 = 0
    public static let knownSuboptions2: UInt8 = 1
    public static let unknownSuboptionRcvd1: UInt8 = 2
    public static let unknownSuboptionRcvd2: UInt8 = 3
    public static let vmotionBegin: UInt8 = 40
    public static let vmotionGoahead: UInt8 = 41
    public static let vmotionNotNow: UInt8 = 43
    public static let vmotionPeer: UInt8 = 44
    public static let vmotionPeerOK: UInt8 = 45
    public static let vmotionComplete: UInt8 = 46
    public static let vmotionAbort: UInt8 = 48
    public static let doProxy: UInt8 = 70
    public static let willProxy: UInt8 = 71
    public static let wontProxy: UInt8 = 73
    public static let vmVCUUID: UInt8 = 80
    public static let getVMVCUUID: UInt8 = 81
    public static let vmName: UInt8 = 82
    public static let getVMName: UInt8 = 83
    public static let vmBIOSUUID: UInt8 = 84
    public static let getVMBIOSUUID: UInt8 = 85
    public static let vmLocationUUID: UInt8 = 86
    public static let getVMLocationUUID: UInt8 = 87

    /// The sub-commands this proxy knows, sent in KNOWN-SUBOPTIONS-2 (the same 18 codes as the capture's server).
    public static let supported: [UInt8] = [0, 1, 2, 3, 40, 41, 43, 44, 45, 46, 48, 70, 71, 73, 80, 81, 82, 83]

    /// `IAC SB 232 <command> <payload, 0xFF doubled> IAC SE`.
    public static func message(_ command: UInt8, _ payload: [UInt8] = []) -> [UInt8] {
        TelnetEncoder.subnegotiation(option: TelnetOption.vmwareExt, payload: [command] + payload)
    }
}

/// A parsed VMware service URI, e.g. `vSPC.py` or `vSPC.py?port=com2`.
public struct ServiceURI: Equatable, Sendable {
    public var base: String
    /// The serial-port label (`?port=<label>`), empty for a VM's only/first port.
    public var label: String

    public static let maxLabelLength = SerialPortLabel.maxLength

    public init(base: String, label: String = "") {
        self.base = base
        self.label = label
    }

    /// Parses `base[?key=value&...]`. The label comes from `port=`; it is limited to printable ASCII without
    /// `:` (it appears in `name:uuid:port` listings) and to 64 characters. Returns nil for an unusable label.
    public init?(parsing text: String) {
        let parts = text.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        base = String(parts[0])
        label = ""
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if kv.count == 2, kv[0] == "port" {
                    label = String(kv[1])
                }
            }
        }
        guard SerialPortLabel.isValid(label) else { return nil }
    }
}
