import Foundation
import NIOCore
import VSPCCore

/// An admin request made inside the daemon (the JSON API minting a console URL): it goes through the machine
/// as any admin connection's would, and its one answer line is collected here.
final class AdminAnswerSink: ConnectionSink {
    private var bytes: [UInt8] = []
    private let promise: EventLoopPromise<[UInt8]>
    private var done = false

    init(_ promise: EventLoopPromise<[UInt8]>) { self.promise = promise }

    func write(_ buffer: ByteBuffer) {
        bytes += buffer.readableBytesView
        if let newline = bytes.firstIndex(of: 0x0A) { finish(Array(bytes[..<newline])) }
    }

    func close(flush: Bool) { finish(bytes) }
    func end(exitStatus: Int) { finish(bytes) }
    func setReading(_ on: Bool) {}
    func closeTransport() { finish(bytes) }

    /// The line, or what came before the close; once.
    func finish(_ line: [UInt8]) {
        guard !done else { return }
        done = true
        promise.succeed(line)
    }
}

extension ConcentratorDriver {
    /// Runs one admin request through the machine as a connection from `peer` and returns its answer, or nil
    /// when none came within `timeout`. On the loop.
    func adminAnswer(_ request: AdminRequest, peer: String, timeout: TimeAmount = .seconds(10)) -> EventLoopFuture<AdminResponse?> {
        loop.preconditionInEventLoop()
        guard let line = try? JSONEncoder().encode(request) else { return loop.makeSucceededFuture(nil) }
        let promise = loop.makePromise(of: [UInt8].self)
        let id = makeID()
        let sink = AdminAnswerSink(promise)
        register(id, sink)
        let timer = loop.scheduleTask(in: timeout) { sink.finish([]) }
        let answer = promise.futureResult.map { [weak self] bytes -> AdminResponse? in
            timer.cancel()
            self?.handle(.adminClosed(id))
            self?.unregister(id)
            return try? JSONDecoder().decode(AdminResponse.self, from: Data(bytes))
        }
        handle(.adminConnected(id, peer: peer))
        handle(.adminLine(id, Array(line)))
        return answer
    }
}
