/// The label of a VM serial port: `com2` in the service URI `vSPC.py?port=com2`, and the `label` of admin
/// requests. It is shown in `name#label` and in `name:uuid:port` listings, so it is printable ASCII without
/// space, `:` or `#`, at most 64 characters. The empty label names a VM's first serial port.
public enum SerialPortLabel {
    public static let maxLength = 64

    public static func isValid(_ label: String) -> Bool {
        label.utf8.count <= maxLength
            && label.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F && $0 != ":" && $0 != "#" }
    }
}
