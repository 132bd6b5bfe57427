
/// The vMotion handoff of one console (one serial port of one VM), as a pure state machine.
///
/// Flow: BEGIN(seq) on the VM's connection -> GOAHEAD(seq + secret); the destination sends PEER(seq + secret)
/// -> PEER-OK(seq); COMPLETE(seq) on the destination makes it the VM's connection. ABORT on the source, or the
/// expiry of the window, resumes the source. Client input during the window is held and delivered afterwards.
/// The pending migration is kept here only (the concentrator's `VMotionTable` holds these machines).
public struct VMotionStateMachine: Sendable {
    public struct Pending: Sendable, Equatable {
        public var sequence: [UInt8]
        public var secret: [UInt8]
        public var source: ConnectionID
        /// The source's address, for the migration's events.
        public var sourcePeer: String
        public var sourceOpen: Bool
        public var destination: ConnectionID?
        /// The address of the last destination accepted (kept after it closes), for the migration's events.
        public var destinationPeer: String?
        public var startedAt: UInt64
        public var generation: Int
        public var held: [UInt8]
        public var heldDropped: Int
    }

    public enum BeginResult: Equatable, Sendable {
        /// Send GOAHEAD with this payload (sequence + secret), un-escaped; arm the expiry timer for `generation`.
        case goahead(payload: [UInt8], generation: Int)
        /// Send NOTNOW with the sequence.
        case notNow(reason: String)
    }

    public enum PeerResult: Equatable, Sendable {
        /// Send PEER-OK carrying the sequence only.
        case accepted(sequence: [UInt8])
        case rejected(reason: String)
    }

    public struct Handoff: Equatable, Sendable {
        /// The connection that now carries the console (destination after COMPLETE, source after ABORT/expiry), if open.
        public var resumeOn: ConnectionID?
        /// Client input held during the window, to be written to `resumeOn`.
        public var held: [UInt8]
        public var heldDropped: Int
        /// A connection to close (the source after COMPLETE; a peered destination after ABORT/expiry).
        public var close: ConnectionID?
        /// Length of the window in nanoseconds.
        public var durationNanos: UInt64
    }

    public enum CompleteResult: Equatable, Sendable {
        case switched(Handoff)
        case rejected(reason: String)
    }

    public enum AbortResult: Equatable, Sendable {
        case resumed(Handoff)
        case ignored(reason: String)
    }

    public enum InputDisposition: Equatable, Sendable {
        case forward
        case held
        /// The hold buffer is full; these bytes were dropped.
        case dropped(Int)
    }

    public let maxHeldBytes: Int
    public private(set) var pending: Pending?
    private var nextGeneration: Int

    /// `firstGeneration`: the generation of the first migration begun (each later one gets the next).
    public init(maxHeldBytes: Int = 256 * 1024, firstGeneration: Int = 1) {
        self.maxHeldBytes = maxHeldBytes
        self.nextGeneration = firstGeneration
    }

    public var isPending: Bool { pending != nil }

    public mutating func begin(sequence: [UInt8], from connection: ConnectionID, currentVM: ConnectionID?,
                               secret: [UInt8], now: UInt64, sourcePeer: String = "") -> BeginResult {
        if pending != nil {
            return .notNow(reason: "a migration is already pending")
        }
        guard connection == currentVM else {
            return .notNow(reason: "connection is not the VM's current connection")
        }
        let generation = nextGeneration
        nextGeneration += 1
        pending = Pending(sequence: sequence, secret: secret, source: connection, sourcePeer: sourcePeer,
                          sourceOpen: true, destination: nil, destinationPeer: nil, startedAt: now,
                          generation: generation, held: [], heldDropped: 0)
        return .goahead(payload: sequence + secret, generation: generation)
    }

    /// True if `cookie` is this console's pending sequence + secret. Compares in constant time for a given length.
    public func matches(cookie: [UInt8]) -> Bool {
        guard let pending else { return false }
        return constantTimeEqual(cookie, pending.sequence + pending.secret)
    }

    /// `address`: the destination's, for the migration's events.
    public mutating func peer(cookie: [UInt8], from connection: ConnectionID, address: String? = nil) -> PeerResult {
        guard var p = pending else { return .rejected(reason: "no migration pending") }
        guard connection != p.source else { return .rejected(reason: "the source cannot be its own destination") }
        guard constantTimeEqual(cookie, p.sequence + p.secret) else {
            return .rejected(reason: "cookie does not match the pending migration")
        }
        if let destination = p.destination, destination != connection {
            return .rejected(reason: "the migration already has a destination")
        }
        p.destination = connection
        if let address { p.destinationPeer = address }
        pending = p
        return .accepted(sequence: p.sequence)
    }

    public mutating func complete(sequence: [UInt8], from connection: ConnectionID, now: UInt64) -> CompleteResult {
        guard let p = pending, p.destination == connection else {
            return .rejected(reason: "VMOTION-COMPLETE without an accepted VMOTION-PEER")
        }
        guard constantTimeEqual(sequence, p.sequence) else {
            return .rejected(reason: "VMOTION-COMPLETE carries another sequence")
        }
        pending = nil
        return .switched(Handoff(resumeOn: connection, held: p.held, heldDropped: p.heldDropped,
                                 close: p.sourceOpen ? p.source : nil,
                                 durationNanos: now &- p.startedAt))
    }

    public mutating func abort(from connection: ConnectionID, now: UInt64) -> AbortResult {
        guard let p = pending, p.source == connection else {
            return .ignored(reason: "VMOTION-ABORT without VMOTION-BEGIN on this connection")
        }
        pending = nil
        return .resumed(Handoff(resumeOn: connection, held: p.held, heldDropped: p.heldDropped,
                                close: p.destination, durationNanos: now &- p.startedAt))
    }

    /// A connection closed. The source may close before the destination's COMPLETE arrives (ESXi closes it at
    /// the same instant), so the migration stays pending until COMPLETE or expiry. A destination that closes
    /// before COMPLETE frees the slot for another PEER.
    public mutating func connectionClosed(_ connection: ConnectionID) {
        guard var p = pending else { return }
        if p.source == connection { p.sourceOpen = false }
        if p.destination == connection { p.destination = nil }
        pending = p
    }

    /// The window of migration `generation` has expired: drop it and resume on the source if it is still open.
    public mutating func expire(generation: Int, now: UInt64) -> Handoff? {
        guard let p = pending, p.generation == generation else { return nil }
        pending = nil
        return Handoff(resumeOn: p.sourceOpen ? p.source : nil, held: p.held, heldDropped: p.heldDropped,
                       close: p.destination, durationNanos: now &- p.startedAt)
    }

    /// The VM reconnected afresh (power-on, reboot) while a migration was pending: forget the migration.
    public mutating func reset(now: UInt64) -> Handoff? {
        guard let p = pending else { return nil }
        pending = nil
        return Handoff(resumeOn: nil, held: p.held, heldDropped: p.heldDropped, close: p.destination,
                       durationNanos: now &- p.startedAt)
    }

    /// Client input for the VM: forwarded, or held while a migration is pending.
    public mutating func clientInput(_ bytes: [UInt8]) -> InputDisposition {
        guard let held = pending?.held.count else { return .forward }
        // Appended in place: copying the pending state would copy the whole hold buffer on every read.
        let room = maxHeldBytes - held
        if bytes.count <= room {
            pending?.held.append(contentsOf: bytes)
            return .held
        }
        pending?.held.append(contentsOf: bytes.prefix(room))
        pending?.heldDropped += bytes.count - room
        return .dropped(bytes.count - room)
    }
}

/// Compares two byte strings in time that depends only on their lengths.
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<a.count { diff |= a[i] ^ b[i] }
    return diff == 0
}
