import Logging
import NIOCore
import NIOPosix
import SkywireCrypto

/// The sudph UDP socket shared by every sudph peer (PROTOCOL.md §4).
final class SudphEndpoint: @unchecked Sendable {
    // @unchecked Sendable: placeholder until the datapath lands.
    let channel: Channel
    var localAddress: SocketAddress? { channel.localAddress }

    private init(channel: Channel) { self.channel = channel }

    static func bind(host: String, port: Int, manager: TransportManager) async throws -> SudphEndpoint {
        let ch = try await DatagramBootstrap(group: manager.group).bind(host: host, port: port).get()
        return SudphEndpoint(channel: ch)
    }

    func dial(remote: PublicKey, host: String, port: Int, entry: TransportEntry) {
        entry.linkClosed(reason: "sudph not implemented yet")
    }

    func close() async { try? await channel.close() }
}
