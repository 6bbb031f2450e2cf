import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// The signals `skywire-dmsg` acts on (Dispatch signal sources; their default actions are
/// disabled while it runs): SIGHUP re-reads `--clients-file`, SIGTERM and SIGINT stop it.
final class DmsgSignals: @unchecked Sendable {
    // @unchecked Sendable: `sources` is written once in init and only kept alive afterwards;
    // `stream`'s continuation is Sendable.
    private var sources: [DispatchSourceSignal] = []
    let stream: AsyncStream<Int32>

    init(_ signals: [Int32]) {
        let (stream, continuation) = AsyncStream<Int32>.makeStream(bufferingPolicy: .bufferingNewest(8))
        self.stream = stream
        for sig in signals {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { continuation.yield(sig) }
            source.resume()
            sources.append(source)
        }
    }
}
