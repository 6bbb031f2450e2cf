import NIOCore
import NIOHTTP1
import NIOPosix
import SkywireConfig
import SkywireCrypto
import SkywireDmsg
import SkywireSystem
import SkywireTransport

/// `GET /health`: the relay's gauges and counters as JSON (docs/dmsg.md "Health"); anything
/// else 404. One NIO thread; the numbers come from `DmsgRelayServer.snapshot()`.
final class DmsgHealthServer: Sendable {
    let channel: Channel
    let group: MultiThreadedEventLoopGroup
    var address: String { channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?" }

    private init(channel: Channel, group: MultiThreadedEventLoopGroup) {
        self.channel = channel
        self.group = group
    }

    static func start(address: SocketAddress, server: DmsgRelayServer, publicKey: PublicKey) async throws -> DmsgHealthServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(HealthHandler(server: server, publicKey: publicKey))
                }
            }
            .bind(to: address).get()
        return DmsgHealthServer(channel: channel, group: group)
    }

    func close() async throws {
        try await channel.close()
        try await group.shutdownGracefully()
    }

    /// The JSON body of `/health`.
    static func body(_ s: DmsgRelayServer.Stats, publicKey: PublicKey, residentKiB: Int) -> String {
        func counts(_ d: [String: Int]) -> JSONValue {
            .object(d.sorted { $0.key < $1.key }.map { .init(name: $0.key, value: .number(String($0.value))) })
        }
        func n<T: BinaryInteger>(_ v: T) -> JSONValue { .number(String(v)) }
        return JSONValue.object([
            .init(name: "status", value: .string("ok")),
            .init(name: "pk", value: .string(publicKey.hex)),
            .init(name: "client_list", value: .string(s.clientPolicy)),
            .init(name: "clients", value: n(s.clients)),
            .init(name: "streams", value: n(s.streams)),
            .init(name: "connections", value: n(s.connections)),
            .init(name: "half_open", value: n(s.halfOpen)),
            .init(name: "streams_opened", value: n(s.core.streamsOpened)),
            .init(name: "bytes_in", value: n(s.bytesIn)),
            .init(name: "bytes_out", value: n(s.bytesOut)),
            .init(name: "data_opener_to_acceptor", value: n(s.core.bytesOpenerToAcceptor)),
            .init(name: "data_acceptor_to_opener", value: n(s.core.bytesAcceptorToOpener)),
            .init(name: "refusals", value: .object([
                .init(name: "open", value: counts(s.core.refusals)),
                .init(name: "handshake", value: counts(s.handshakeRefusals)),
                .init(name: "connection", value: counts(s.connectionRefusals)),
                .init(name: "clients_full", value: n(s.core.refusedClientsFull)),
                .init(name: "refused_keys", value: n(s.refusedKeys)),
                .init(name: "stream_protocol_errors", value: n(s.core.streamProtocolErrors)),
                .init(name: "idle_closed", value: n(s.idleClosed)),
                .init(name: "replaced_sessions", value: n(s.core.replacedSessions)),
            ])),
            .init(name: "rss_kib", value: n(residentKiB)),
        ]).compact()
    }

    /// This process's resident set in KiB (/proc/self/statm), -1 when unreadable.
    static func residentKiB() -> Int {
        guard let bytes = try? FileIO.read("/proc/self/statm"),
              let field = String(decoding: bytes, as: UTF8.self).split(separator: " ").dropFirst().first,
              let pages = Int(field) else { return -1 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE))) / 1024
    }
}

private final class HealthHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let server: DmsgRelayServer
    let publicKey: PublicKey

    init(server: DmsgRelayServer, publicKey: PublicKey) {
        self.server = server
        self.publicKey = publicKey
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let channel = context.channel
        guard head.method == .GET, head.uri == "/health" else {
            Self.respond(channel, status: .notFound, body: #"{"error":"not found: GET /health"}"#)
            return
        }
        let (server, publicKey) = (self.server, self.publicKey)
        Task {
            let stats = await server.snapshot()
            Self.respond(channel, status: .ok, body: DmsgHealthServer.body(stats, publicKey: publicKey,
                                                                             residentKiB: DmsgHealthServer.residentKiB()))
        }
    }

    static func respond(_ channel: Channel, status: HTTPResponseStatus, body: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "Connection", value: "close")
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        channel.write(HTTPServerResponsePart.head(head), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: body))), promise: nil)
        channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in channel.close(promise: nil) }
    }
}
