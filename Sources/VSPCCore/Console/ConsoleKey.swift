/// Identifies one connection (TCP, or an SSH session) (a VM's, a person's or an admin client's) inside the concentrator.
public typealias ConnectionID = Int

/// Identifies one console: one serial port (label) of one VM (uuid, 32 lowercase hex).
public struct ConsoleKey: Hashable, Sendable, CustomStringConvertible {
    public var uuid: String
    public var label: String
    public init(uuid: String, label: String) {
        self.uuid = uuid
        self.label = label
    }
    public var description: String { label.isEmpty ? uuid : "\(uuid)#\(label)" }
}
