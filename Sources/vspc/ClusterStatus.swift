import Foundation
import VSPCCore

/// Several daemons: this daemon's node, then one line per node (name, link, alive or dead, heartbeat age,
/// consoles owned). Nothing for one daemon alone.
func formatNodes(_ s: DaemonStatus, width: Int) -> [String] {
    guard let node = s.node else { return [] }
    let pad = { (label: String) in label.padding(toLength: width + 2, withPad: " ", startingAt: 0) }
    var lines = [pad("node") + show(node)]
    let nodes = s.nodes ?? []
    lines.append(pad("nodes") + "\(nodes.count) (\(nodes.filter(\.alive).count) alive)")
    guard !nodes.isEmpty else { return lines }
    var rows = [["NAME", "LINK", "STATE", "HEARTBEAT", "CONSOLES"]]
    for n in nodes {
        let age = n.heartbeatAge.map { "\(Int($0.rounded(.down)))s ago" } ?? "-"
        rows.append([show(n.name), show(n.link), n.alive ? "alive" : "dead", age,
                     "\(n.consoles)"])
    }
    var widths = rows[0].map(\.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    for row in rows {
        lines.append("  " + row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  "))
    }
    return lines
}
