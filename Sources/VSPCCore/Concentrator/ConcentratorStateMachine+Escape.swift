import Foundation

/// The escape menu's commands (`Ctrl-]` then a key, on the SSH door).
extension ConcentratorStateMachine {
    mutating func escapeCommand(_ command: EscapeCommand, _ client: ClientConnection) {
        let key = client.console
        switch command {
        case .disconnect:
            end(client.id, door: client.door, exitStatus: 0)
        case .help:
            emit(.send(client.id, Array(("\r\n" + EscapeMenu.helpText).utf8)))
        case .who:
            emit(.send(client.id, Array(whoList(key).utf8)))
        case .sendBreak:
            guard mayWrite(client) else { return notice(client.id, readOnlyReason(client)) }
            if let vm = consoles[key]?.vm, vms[vm]?.writable == true {
                emit(.send(vm, [Telnet.IAC, Telnet.BRK]))
                record(.clientBreak, key, peer: client.peer, detail: auditDetail(client))
                notice(client.id, "BREAK sent")
            } else if config.cluster != nil, let feed = cluster.feeds[key], feed.open, feed.closed == nil {
                // The VM is on another node: its owner sends the BREAK.
                emit(.cluster(.sendBreak(feed.id)))
                record(.clientBreak, key, peer: client.peer, detail: auditDetail(client) + " via node \(feed.owner.node)")
                notice(client.id, "BREAK sent (through node \(feed.owner.node))")
            } else {
                notice(client.id, "the VM is not connected")
            }
        case .replay:
            // Notice lines mark where the replay starts and ends (on doors that show notices).
            let bytes = consoles[key]?.scrollback.contents() ?? []
            guard !bytes.isEmpty else { return notice(client.id, "the scrollback is empty") }
            notice(client.id, "replay of the scrollback, \(ByteCount.text(bytes.count)):")
            emit(.send(client.id, client.door.frame(bytes)))
            notice(client.id, "end of the replay")
        case .toggleExclusiveWrite:
            toggleExclusive(client)
        }
    }

    /// `w`: everyone on the console, over every door.
    func whoList(_ key: ConsoleKey) -> String {
        guard let console = consoles[key] else { return "" }
        var lines = ["\r\nwho is attached to \(DisplayText.escape(console.name)):"]
        for id in console.clients.sorted() {
            guard let c = clients[id] else { continue }
            let mode = console.exclusive == id ? "exclusive" : (mayWrite(c) ? "read-write" : "read-only")
            lines.append("  \(c.door.name.padding(toLength: 6, withPad: " ", startingAt: 0)) \(DisplayText.escape(c.who)) from \(c.peer), \(mode), since \(localTime(c.since))")
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// A time as `w` shows it: the daemon's local time (`config.timeZone`), as `vspc history` prints it.
    func localTime(_ date: Date) -> String { AdminProtocol.localTimestamp(date, in: config.timeZone) }
}
