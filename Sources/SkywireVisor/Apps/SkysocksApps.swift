import Logging
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireSocks
import SkywireTransport

/// `skysocks` (port 3): the SOCKS5 server end, reached by other visors' `skysocks-client`.
final class SkysocksServerVisorApp: VisorApp {
    private let server: SkysocksServerApp

    init(context: AppContext, options: SkysocksServerOptions) {
        // Streams over stcpr arrive on a datapath loop (raw sockets); UDP ASSOCIATE binds on the NIO loops.
        server = SkysocksServerApp(options: options, group: context.transports.group, logger: context.logger)
    }

    func start() async throws { server.start() }
    func stop() async { server.stop() }
    var whitelist: AppWhitelist? { server.options.whitelist }

    func accept(stream: AppStream) -> Bool {
        server.accept(stream)
        return true
    }

    func status() -> AppStatusReport {
        let s = server.status
        var fields = s.controlFields
        fields["whitelist"] = .array(server.options.whitelist.sortedKeys.map { .string($0.hex) })
        fields["secure"] = .bool(server.options.secure)
        fields["refused_destinations"] = .int(Int64(clamping: s.refusedDestinations))
        fields["udp_datagrams_refused"] = .int(Int64(clamping: s.datagramsRefused))
        return AppStatusReport(detail: "\(s.activeSessions) active", fields: fields)
    }
}

/// `skysocks-client` (port 13): a local SOCKS5 listener whose connections become streams to
/// the server visor's port 3.
final class SkysocksClientVisorApp: VisorApp {
    private let client: SkysocksClientApp
    private let server: String

    init(context: AppContext, options: SkysocksClientOptions) throws(AppError) {
        let transports = context.transports
        let localPort = context.port
        do {
            // The options checked the key's form: decoded once here, not per proxied connection.
            let serverKey = try PublicKey(hex: options.serverKeyHex)
            server = options.serverKeyHex
            // The listener and accepted connections are raw sockets on the datapath loop a transport
            // this visor dials to the server runs on; a connection whose stream runs on another
            // datapath loop (sudph's, a dmsg relay's) moves there before it is piped.
            client = SkysocksClientApp(options: options, group: transports.group,
                                       datapathLoop: try transports.datapathLoop(for: serverKey),
                                       logger: context.logger) { request in
                let loop = request.preferredEventLoop
                guard let pk = request.remoteKeyHex == options.serverKeyHex ? serverKey
                        : try? PublicKey(hex: request.remoteKeyHex) else {
                    return loop.makeFailedFuture(AppError("\(request.remoteKeyHex) is not a public key"))
                }
                // Optimistic open: the SOCKS greeting travels as early data right behind OPEN
                // (PROTOCOL.md §5), saving a round trip per connection; a refusal arrives as a
                // stream reset, which the pipe turns into the matching SOCKS reply.
                return transports.openStream(to: pk, port: request.remotePort, sourcePort: localPort,
                                             waitForAccept: false)
            }
        } catch {
            throw AppError(.invalidArguments, "skysocks-client: \(error)")
        }
    }

    func start() async throws {
        do {
            try await client.start().get()
        } catch {
            throw AppError("skysocks-client: cannot listen: \(error)")
        }
    }

    func stop() async { try? await client.stop().get() }

    func status() -> AppStatusReport {
        let s = client.status
        var fields = s.controlFields
        fields["server_pk"] = .string(server)
        fields["listen_addr"] = client.localAddress.map { .string("\($0.ipAddress ?? "?"):\($0.port ?? 0)") } ?? .null
        return AppStatusReport(detail: "\(s.activeSessions) active via \(String(server.prefix(8)))…", fields: fields)
    }
}

extension SkysocksStatus {
    var controlFields: [String: ControlValue] {
        [
            "active_sessions": .int(Int64(activeSessions)), "total_sessions": .int(Int64(totalSessions)),
            "failed_sessions": .int(Int64(failedSessions)), "bytes_up": .int(Int64(clamping: bytesUp)),
            "bytes_down": .int(Int64(clamping: bytesDown)),
            "udp_datagrams_relayed": .int(Int64(clamping: datagramsRelayed)),
        ]
    }
}
