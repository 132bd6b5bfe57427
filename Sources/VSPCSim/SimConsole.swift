import Foundation

/// What `vspc-vmsim` needs besides the ESXi side of a VM: stable uuids for a fleet, a Linux boot log, and a
/// login prompt that answers typing the way a serial getty does.
public enum SimFleet {
    /// A VM's uuid (32 hex digits) from the fleet's key (its name prefix, or `--uuid-seed`) and the VM's index:
    /// the same key and index give the same uuid on every run, and two keys give unrelated uuids, so
    /// `--name db` next to `--name web` does not collide.
    public static func uuid(key: String, index: Int) -> String {
        let high = fnv1a64(Array("vspc-vmsim/\(key)".utf8))
        let low = fnv1a64(Array("vspc-vmsim/\(key)#\(index)".utf8))
        return String(format: "%016llx%016llx", high, low)
    }

    static func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}

/// A made-up but typical boot of a small Linux server on a serial console (ttyS0), ending at the login prompt.
public enum BootLog {
    private static let ok = "[\u{1B}[0;32m  OK  \u{1B}[0m]"

    /// The boot, one element per line, without line ends; the hostname is the VM's name.
    public static func lines(hostname: String) -> [String] {
        let kernel: [(String, String)] = [
            ("0.000000", "Linux version 6.1.0-28-amd64 (simulated build) #1 SMP PREEMPT_DYNAMIC"),
            ("0.000000", "Command line: BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=/dev/sda1 ro console=tty0 console=ttyS0,115200n8"),
            ("0.000000", "BIOS-provided physical RAM map:"),
            ("0.000000", "DMI: VMware, Inc. VMware Virtual Platform/440BX Desktop Reference Platform, BIOS 6.00 11/12/2020"),
            ("0.000000", "Hypervisor detected: VMware"),
            ("0.012483", "tsc: Detected 2394.374 MHz processor"),
            ("0.104212", "Memory: 3982184K/4193716K available"),
            ("0.118735", "smpboot: Allowing 2 CPUs, 0 hotplug CPUs"),
            ("0.352101", "printk: console [ttyS0] enabled"),
            ("0.871554", "Serial: 8250/16550 driver, 4 ports, IRQ sharing enabled"),
            ("0.873012", "00:05: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A"),
            ("1.204876", "vmw_pvscsi: using 64bit dma"),
            ("1.311420", "sd 0:0:0:0: [sda] 41943040 512-byte logical blocks: (21.5 GB/20.0 GiB)"),
            ("1.318903", " sda: sda1 sda2 < sda5 >"),
            ("1.402117", "vmxnet3 0000:0b:00.0 ens192: renamed from eth0"),
            ("2.015338", "EXT4-fs (sda1): mounted filesystem with ordered data mode. Quota mode: none."),
            ("2.231609", "systemd[1]: systemd 252 running in system mode"),
            ("2.240004", "systemd[1]: Detected virtualization vmware."),
            ("2.241870", "systemd[1]: Hostname set to <\(hostname)>."),
        ]
        var out = kernel.map { "[\(String(repeating: " ", count: max(0, 12 - $0.0.count)))\($0.0)] \($0.1)" }
        out += ["", "Welcome to \u{1B}[1mDebian GNU/Linux 12 (bookworm)\u{1B}[0m!", ""]
        let units = [
            "Created slice system-getty.slice - Slice /system/getty.",
            "Created slice system-serial\\x2dgetty.slice - Slice /system/serial-getty.",
            "Reached target cryptsetup.target - Local Encrypted Volumes.",
            "Listening on systemd-journald.socket - Journal Socket.",
            "Started systemd-journald.service - Journal Service.",
            "Finished systemd-remount-fs.service - Remount Root and Kernel File Systems.",
            "Started systemd-udevd.service - Rule-based Manager for Device Events and Files.",
            "Reached target local-fs.target - Local File Systems.",
            "Finished systemd-tmpfiles-setup.service - Create Volatile Files and Directories.",
            "Started systemd-timesyncd.service - Network Time Synchronization.",
            "Reached target sysinit.target - System Initialization.",
            "Started cron.service - Regular background program processing daemon.",
            "Started networking.service - Raise network interfaces.",
            "Reached target network.target - Network.",
            "Started ssh.service - OpenBSD Secure Shell server.",
            "Started serial-getty@ttyS0.service - Serial Getty on ttyS0.",
            "Reached target getty.target - Login Prompts.",
            "Reached target multi-user.target - Multi-User System.",
        ]
        out += units.map { "\(ok) \($0)" }
        out += ["", "Debian GNU/Linux 12 \(hostname) ttyS0", ""]
        return out
    }

    /// The prompt a serial getty prints, without a line end.
    public static func prompt(hostname: String) -> String { "\(hostname) login: " }
}

/// A serial getty's answers to typing: it echoes the user name, asks for a password without echo, and refuses
/// every login. Feed it what people type; it returns what the console prints back.
public struct Getty: Sendable {
    public let hostname: String
    private var askingPassword = false
    private var line: [UInt8] = []
    private var lastWasCR = false
    /// A line longer than this is cut, as a terminal's line buffer would.
    static let maxLine = 256

    public init(hostname: String) { self.hostname = hostname }

    public mutating func typed(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for byte in bytes {
            defer { lastWasCR = byte == 0x0D }
            switch byte {
            case 0x0D, 0x0A:
                if byte == 0x0A, lastWasCR { continue } // CR LF is one Enter
                out += Array("\r\n".utf8)
                if askingPassword {
                    askingPassword = false
                    out += Array("\r\nLogin incorrect\r\n".utf8) + Array(BootLog.prompt(hostname: hostname).utf8)
                } else if line.isEmpty {
                    out += Array(BootLog.prompt(hostname: hostname).utf8)
                } else {
                    askingPassword = true
                    out += Array("Password: ".utf8)
                }
                line = []
            case 0x00:
                continue // CR NUL is Enter too
            case 0x08, 0x7F:
                if !line.isEmpty {
                    line.removeLast()
                    if !askingPassword { out += [0x08, 0x20, 0x08] }
                }
            case 0x20...0x7E, 0x80...0xFF:
                guard line.count < Self.maxLine else { continue }
                line.append(byte)
                if !askingPassword { out.append(byte) }
            default:
                continue
            }
        }
        return out
    }
}
