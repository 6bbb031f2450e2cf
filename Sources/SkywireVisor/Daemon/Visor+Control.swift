import Logging
import NIOCore
import SkywireCrypto
import SkywireTransport

extension Visor {
    /// Dispatches one control request (docs/cli.md lists the methods).
    func handle(_ request: ControlRequest) async -> ControlResponse {
        do {
            let result = try await dispatch(request.method, request.params)
            return ControlResponse(id: request.id, result: result)
        } catch let e as ControlError {
            return ControlResponse(id: request.id, error: e)
        } catch let e as AppError {
            return ControlResponse(id: request.id, error: ControlError(.failed, e.message))
        } catch let e as TransportError {
            let code: ControlError.Code
            switch e.kind {
            case .badAddress: code = .badRequest
            case .notFound: code = .notFound
            case .timeout: code = .timeout
            case .unreachable, .handshake, .closed: code = .failed
            }
            return ControlResponse(id: request.id, error: ControlError(code, e.message))
        } catch {
            return ControlResponse(id: request.id, error: ControlError(.failed, "\(error)"))
        }
    }

    private func dispatch(_ method: String, _ params: [String: ControlValue]) async throws -> ControlValue {
        switch method {
        case "visor.info":
            return .object([
                "pk": .string(options.transport.identity.publicKey.hex),
                "version": .string(SkywireVersion.string),
                "uptime_seconds": .int(uptimeSeconds),
                "stcpr_addr": transports.stcprListenAddress.map { .string($0) } ?? .null,
                "sudph_addr": transports.sudphListenAddress.map { .string($0) } ?? .null,
                "transports": .array(transports.list().map(\.controlValue)),
                "apps": .array(apps.snapshot()),
            ])
        case "visor.ping":
            return try await ping(params)
        case "tp.add":
            let pk = try Self.publicKey(params.requiredString("pk"))
            let typeName = try params.optionalString("type") ?? TransportType.stcpr.rawValue
            guard let type = TransportType(rawValue: typeName) else {
                throw ControlError(.badRequest, "unknown transport type \"\(typeName)\" (stcpr or sudph)")
            }
            let info = try await transports.add(remote: pk, type: type, address: params.optionalString("addr"))
            return info.controlValue
        case "tp.ls":
            return .array(transports.list().map(\.controlValue))
        case "tp.rm":
            try transports.remove(params.requiredString("target"))
            return .object([:])
        case "apps.ls":
            return .array(apps.snapshot())
        case "apps.start":
            try await apps.start(params.requiredString("name"))
            return .object([:])
        case "apps.stop":
            try await apps.stop(params.requiredString("name"))
            return .object([:])
        default:
            throw ControlError(.badRequest, "unknown method \"\(method)\"")
        }
    }

    static func publicKey(_ hex: String) throws -> PublicKey {
        do {
            return try PublicKey(hex: hex)
        } catch {
            throw ControlError(.badRequest, "\"\(hex)\" is not a public key (64 lowercase hex characters)")
        }
    }
}

extension TransportInfo {
    /// The stable JSON form of `tp ls --json` (docs/cli.md).
    public var controlValue: ControlValue {
        var o: [String: ControlValue] = [
            "id": .string(id), "type": .string(type.rawValue), "remote_pk": .string(remoteKey.hex),
            "remote_addr": .string(remoteAddress), "initiator": .bool(initiator), "wanted": .bool(wanted),
            "state": .string(state.rawValue), "bytes_sent": .int(Int64(clamping: bytesSent)),
            "bytes_received": .int(Int64(clamping: bytesReceived)), "streams": .int(Int64(streams)),
        ]
        o["established_unix"] = establishedAt.map { .int($0) } ?? .null
        o["last_error"] = lastError.map { .string($0) } ?? .null
        o["retry_in_seconds"] = retryInSeconds.map { .int($0) } ?? .null
        o["rtt_ms"] = rttMillis.map { .double($0) } ?? .null
        return .object(o)
    }
}
