import NIOCore
import VSPCCore

/// Where the driver writes what the machine sends to one connection, and how it ends it: one protocol over NIO
/// channels (VMs, telnet ports, the admin endpoint and `tail -f`) and SSH sessions. A new door brings one sink;
/// the driver's write sites never ask which kind they hold.
protocol ConnectionSink: AnyObject {
    /// Bytes for the peer, in order.
    func write(_ buffer: ByteBuffer)
    /// Closes the connection; with `flush`, once what was queued for it has left.
    func close(flush: Bool)
    /// Ends the session with an exit status where the door has one, after what was queued for it.
    func end(exitStatus: Int)
    /// Stops or resumes reading the peer (back-pressure on a VM).
    func setReading(_ on: Bool)
    /// Closes the connection under it with everything it carries (an SSH connection and all its sessions).
    func closeTransport()
    /// A one-line notice shown apart from the console's bytes (`Door.noticesApart`).
    func notice(_ text: String)
}

extension ConnectionSink {
    /// Doors without a place of their own for notices get them inline, as `Door.notice` frames them.
    func notice(_ text: String) { write(ByteBuffer(string: "\r\n[vspcd: \(text)]\r\n")) }
}

/// A NIO channel. Its back-pressure is the channel's water marks: the handler reports writability to the machine.
final class ChannelSink: ConnectionSink {
    let channel: Channel

    init(_ channel: Channel) { self.channel = channel }

    func write(_ buffer: ByteBuffer) { channel.writeAndFlush(buffer, promise: nil) }

    func close(flush: Bool) {
        guard flush else { return channel.close(promise: nil) }
        // Writes complete in order: once this empty one has, everything queued before it has left. A peer that
        // never reads is closed after 10 s regardless.
        let channel = self.channel
        channel.writeAndFlush(ByteBuffer()).whenComplete { _ in channel.close(promise: nil) }
        channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
    }

    func end(exitStatus: Int) { close(flush: true) }

    func closeTransport() { close(flush: true) }

    func setReading(_ on: Bool) {
        let channel = self.channel
        channel.setOption(ChannelOptions.autoRead, value: on).whenSuccess { if on { channel.read() } }
    }
}

/// An SSH session, a door that skips ahead: bytes its client's window and socket do not take wait in a bounded
/// `ReaderBacklog`; past the bound the oldest are skipped for this reader alone, and `skipped` reports how many
/// so the machine can record it. Drained as the session becomes writable again.
final class SSHSessionSink: ConnectionSink {
    let session: SSHConsoleSession
    private var backlog: ReaderBacklog
    private let skipped: (Int) -> Void

    init(_ session: SSHConsoleSession, backlogLimit: Int, skipped: @escaping (Int) -> Void) {
        self.session = session
        self.backlog = ReaderBacklog(limit: backlogLimit, policy: .skipAhead)
        self.skipped = skipped
    }

    /// Bytes handed to the session at once while it is writable: a large send (a scrollback replay) goes in
    /// pieces, so the session's own queue never holds more than its window and socket take plus one piece.
    static let piece = 64 * 1024

    func write(_ buffer: ByteBuffer) {
        let bytes = Array(buffer.readableBytesView)
        var offset = 0
        while offset < bytes.count, backlog.isEmpty, session.isWritable {
            let end = min(bytes.count, offset + Self.piece)
            session.write(Array(bytes[offset..<end]))
            offset = end
        }
        guard offset < bytes.count else { return }
        if case .skipped(let count) = backlog.append(Array(bytes[offset...])), count > 0 { skipped(count) }
        drain()
    }

    /// Hands the session what it takes now.
    func drain() {
        while session.isWritable, let chunk = backlog.take(max: Self.piece) { session.write(chunk) }
    }

    func close(flush: Bool) { end(exitStatus: 0) }

    func end(exitStatus: Int) {
        // What waits goes out before the exit status (the session's own bound still applies).
        while let chunk = backlog.take(max: Self.piece) { session.write(chunk) }
        session.close(exitStatus: exitStatus)
    }

    func setReading(_ on: Bool) {}

    func closeTransport() { session.closeConnection() }
}
