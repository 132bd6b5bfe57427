/// The version of vspcd and vspc, in one place: `--version` prints it, and the metrics' `vspc_build_info`
/// carries it.
public enum VSPCVersion {
    public static let current = "0.3.0"
}
