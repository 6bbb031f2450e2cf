import Logging
import NIOCore
import NIOPosix
import SkywireCrypto

extension TransportManager {
    /// Binds the stcpr listener; each accepted connection runs the responder handshake.
    func bindStcpr() async throws -> Channel {
        let settings = self.settings
        let timeout = TimeAmount.seconds(settings.handshakeTimeout)
        let logger = self.logger
        return try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [weak self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let box = InboundEntryBox()
                    let handler = try StcprHandler(
                        identity: settings.identity, expectedRemote: nil, handshakeTimeout: timeout, logger: logger,
                        hooks: .init(
                            established: { pk, link in
                                guard let self else { return nil }
                                let addr = channel.remoteAddress.map(TransportManager.format) ?? "?"
                                let entry = TransportEntry(manager: self, id: self.newID(), remote: pk, type: .stcpr,
                                                           host: channel.remoteAddress?.ipAddress ?? "?",
                                                           port: channel.remoteAddress?.port ?? 0,
                                                           initiator: false, wanted: false)
                                guard self.registerInbound(entry) else { return nil }
                                box.entry = entry
                                return entry.established(link: link, on: channel.eventLoop, remoteAddress: addr)
                            },
                            closed: { reason in box.entry?.linkClosed(reason: reason) }))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(NoiseLengthPrefixDecoder()))
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .bind(host: settings.listenHost, port: settings.stcprPort).get()
    }
}

/// Holds the entry an inbound connection creates once its handshake completes.
/// Confined to the connection's event loop.
final class InboundEntryBox: @unchecked Sendable {
    // @unchecked Sendable: written and read only on the owning channel's event loop.
    var entry: TransportEntry?
}
