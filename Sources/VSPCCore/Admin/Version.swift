/// This build's version: `vspcd --version`, `vspc status`, `vspc_build_info{version}`.
public enum VSPCVersion {
    public static let current = "0.3.0"
}
