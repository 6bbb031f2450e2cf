import NIOCore
import SkywireTransport

/// Joins a client's stream to a server's on one loop, both ways: bytes, FIN as FIN (half-close),
/// a reset as a reset, back-pressure by pausing the side whose bytes the other cannot take. The
/// server's FIN ends the exchange (the pty session sent `exit` or `error`): the server's input is
/// finished too, so it can close at once, and what the client still sends is read and dropped
/// until its FIN. The pty app's client stream and its connection to the session host (docs/pty.md
/// "Session host").
final class AppStreamSplice {
    private let client: AppStream
    private let server: AppStream
    private let onDone: () -> Void
    private var sides: [Side] = []
    private var done = false
    /// The client's delegate is a `Drain` (the server ended first).
    private var draining = false

    /// One direction's receiver: what `from` reports goes to `to`.
    private final class Side: AppStreamDelegate {
        /// A cycle (splice → sides → splice) that `end` breaks.
        let splice: AppStreamSplice
        let from: AppStream
        let to: AppStream

        init(splice: AppStreamSplice, from: AppStream, to: AppStream) {
            self.splice = splice
            self.from = from
            self.to = to
        }

        func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
            to.write(data)
            if !to.isWritable { from.setReadPaused(true) }
        }

        func appStreamDidReceiveFinish(_ stream: AppStream) {
            to.finish()
            if from === splice.server { splice.serverFinished() }
        }

        func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
            to.reset(code)
            splice.end()
        }

        /// `from`'s writability changed: the other side's reads (into `from`) may go on.
        func appStreamWritabilityChanged(_ stream: AppStream) {
            if stream.isWritable { to.setReadPaused(false) }
        }
    }

    /// Reads and drops what a client still sends after the server ended, so its FIN arrives.
    private final class Drain: AppStreamDelegate {
        func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {}
        func appStreamDidReceiveFinish(_ stream: AppStream) { stream.setDelegate(nil) }
        func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { stream.setDelegate(nil) }
        func appStreamWritabilityChanged(_ stream: AppStream) {}
    }

    /// Call on the loop both streams share; `onDone` runs once, when the server ended (or either reset).
    init(client: AppStream, server: AppStream, onDone: @escaping () -> Void) {
        self.client = client
        self.server = server
        self.onDone = onDone
    }

    /// Sets the delegates (the splice stays alive through them until it ends) and resumes reads.
    func start() {
        let up = Side(splice: self, from: client, to: server)
        let down = Side(splice: self, from: server, to: client)
        sides = [up, down]
        client.setDelegate(up)
        server.setDelegate(down)
        client.setReadPaused(false)
        server.setReadPaused(false)
    }

    /// Aborts both streams (the app stops): the session host sees its connection go and hangs
    /// the command up (SIGHUP, then SIGKILL), the client sees a reset.
    func hangUp() {
        guard !done else { return }
        client.reset(.appClosed)
        server.reset(.appClosed)
        end()
    }

    private func serverFinished() {
        guard !done else { return }
        server.finish()
        server.setDelegate(nil)
        draining = true
        client.setDelegate(Drain())
        client.setReadPaused(false)
        end()
    }

    private func end() {
        guard !done else { return }
        done = true
        if !draining { client.setDelegate(nil) }
        server.setDelegate(nil)
        sides = []
        onDone()
    }
}
