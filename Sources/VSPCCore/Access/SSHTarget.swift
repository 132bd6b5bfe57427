/// What an SSH user name asks for: `list`, a console `VM`, or `VM#label` for another serial port of the VM.
public enum SSHTarget: Sendable, Hashable {
    /// `list`: print the VMs the key may reach and exit. (A VM really called `list` is reached by its uuid.)
    case list
    /// A console: `vm` is a name, a uuid in any spelling or a unique prefix (resolved by the caller); `label` is
    /// empty for the VM's first serial port.
    case console(vm: String, label: String)

    /// nil for an empty user name, an empty VM part (`#com2`) or an empty label (`web-0#`). The label is what
    /// follows the last `#` (labels hold no `#`; a VM name may).
    public init?(user: String) {
        if user == "list" {
            self = .list
            return
        }
        guard let hash = user.lastIndex(of: "#") else {
            guard !user.isEmpty else { return nil }
            self = .console(vm: user, label: "")
            return
        }
        let vm = String(user[..<hash])
        let label = String(user[user.index(after: hash)...])
        guard !vm.isEmpty, !label.isEmpty else { return nil }
        self = .console(vm: vm, label: label)
    }
}
