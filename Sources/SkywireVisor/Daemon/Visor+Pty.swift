import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireTransport

extension Visor {
    /// `stream.open` (docs/cli.md): a stream to `pk`'s app on `port` for the CLI (`skywire cli pty`),
    /// dialling a transport first when none is up (within `timeout` seconds, default 20).
    /// The opener's refusal (a whitelist) is `forbidden`, a port nothing listens on `not_found`.
    func openStream(_ params: [String: ControlValue]) async throws -> AppStream {
        let pk = try Self.publicKey(params.requiredString("pk"))
        let port = try params.optionalInt("port") ?? Int64(AppName.pty.defaultPort)
        guard let port = UInt16(exactly: port), port > 0 else { throw ControlError(.badRequest, "port must be in 1...65535") }
        let timeout = try params.optionalInt("timeout") ?? Self.streamOpenTimeout
        do {
            try await ensureTransport(to: pk, timeout: timeout)
            return try await transports.openStream(to: pk, port: port, sourcePort: port, timeout: .seconds(timeout)).get()
        } catch let e as TransportError {
            switch e.streamCode {
            case .refused?, .forbidden?: throw ControlError(.forbidden, e.message)
            case .noSuchPort?: throw ControlError(.notFound, "\(pk.hex) runs no app on port \(port): \(e.message)")
            default: throw ControlError(e.kind == .timeout ? .timeout : .failed, e.message)
            }
        } catch let e as AppError {
            throw ControlError(e)
        }
    }

    static let streamOpenTimeout: Int64 = 20
}
