import SkywireIO
import SkywireTransport

extension AppStream {
    /// The `EpollEventLoop` the stream runs on, where the SOCKS apps put their TCP connections
    /// (`RawSocksSocket`) so socket and stream share one thread. Every transport's streams run on
    /// one (stcpr, sudph and dmsg: `TransportManager.datapathLoop(for:)`), and so do the
    /// `LoopbackAppStream`s the resolver and the tests make; nil only for a stream made on some
    /// other loop, which the SOCKS apps refuse (`SkysocksStreamLoopError`): there is no second
    /// socket kind to fall back on.
    var datapathLoop: EpollEventLoop? { eventLoop as? EpollEventLoop }
}

/// A stream reached a SOCKS app on a loop that is not an `EpollEventLoop` (see `datapathLoop`).
struct SkysocksStreamLoopError: Error, CustomStringConvertible {
    var description: String { "the stream is not on a datapath event loop" }
}
