import Logging
import NIOPosix
import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
import SkywireSystem

/// The web UI's part of the visor (docs/ui.md): the listener, and the control methods
/// `ui.token`, `ui.password` and `discovery.services`.
extension Visor {
    /// The stored password hash: `<state_dir>/ui-password` (Argon2id string, mode 0600).
    static let uiPasswordFile = "ui-password"
    /// Largest password file read: an Argon2id string is about 100 bytes.
    static let maxUIPasswordFileBytes = 512

    var uiPasswordPath: String { Self.uiPasswordPath(stateDirectory: options.stateDirectory) }

    static func uiPasswordPath(stateDirectory: String) -> String {
        (stateDirectory.hasSuffix("/") ? stateDirectory : stateDirectory + "/") + uiPasswordFile
    }

    static func makeUI(options: VisorOptions, group: MultiThreadedEventLoopGroup, box: VisorBox, logger: Logger) -> UIServer? {
        guard let listen = options.uiListen else { return nil }
        let passwordPath = uiPasswordPath(stateDirectory: options.stateDirectory)
        let origin = ContinuousClock.now
        let handler = UIHandler(
            auth: UIAuthenticator(),
            control: { request in
                guard let visor = box.visor else {
                    return ControlResponse(id: request.id, error: ControlError(.unavailable, "the visor is shutting down"))
                }
                return await visor.handle(request)
            },
            storedPassword: { storedUIPassword(path: passwordPath) },
            clock: {
                let d = ContinuousClock.now - origin
                return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
            })
        return UIServer(host: listen.host, port: Int(listen.port), group: group, handler: handler, logger: logger)
    }

    /// Binds the UI; a failure (the port is taken) is logged and the visor runs without it.
    func startUI() async {
        guard let ui else { return }
        do {
            try await ui.start()
        } catch {
            logger.error("web UI not started: cannot listen on \(ui.address): \(error)")
        }
    }

    /// The hash in `path` when it is an Argon2id string; nil otherwise (no password set).
    static func storedUIPassword(path: String) -> String? {
        guard let bytes = try? FileIO.read(path), bytes.count <= maxUIPasswordFileBytes else { return nil }
        guard let text = String(decoding: bytes, as: UTF8.self).split(whereSeparator: { $0.isWhitespace }).first else { return nil }
        return PasswordHash.isWellFormed(String(text)) ? String(text) : nil
    }

    func uiControl(_ method: String, _ params: [String: ControlValue]) async throws -> ControlValue {
        switch method {
        case "ui.token":
            guard let ui else { throw ControlError(.unavailable, "the web UI is off (ui.listen is \"\" in the config)") }
            let token = ui.handler.auth.issueToken(now: ui.handler.clock())
            return .object(["token": .string(token), "url": .string(uiBaseURL(ui)),
                            "expires_in_seconds": .int(Int64(UIAuthenticator.tokenLifetime))])
        case "ui.password":
            let password = try params.requiredString("password")
            let hash: String
            // Argon2id (64 MiB, about half a second) on the blocking pool.
            let bytes = Array(password.utf8)
            do { hash = try await BlockingPool.shared.run { try PasswordHash.hash(bytes) } } catch {
                throw ControlError(.badRequest, "\(error)")
            }
            do { try AtomicFile.write(Array((hash + "\n").utf8), to: uiPasswordPath, mode: 0o600, replace: true) } catch {
                throw ControlError(.failed, "cannot store the UI password: \(error)")
            }
            // A new password ends every session opened with the old one.
            ui?.handler.auth.endAllSessions()
            return .object(["stored": .string(uiPasswordPath)])
        default:  // discovery.services
            return try await discoveryServices(params)
        }
    }

    /// `http://HOST:PORT/` for the UI; a wildcard listener is reached over loopback.
    func uiBaseURL(_ ui: UIServer) -> String {
        guard let listen = options.uiListen else { return "" }
        let port = ui.boundPort ?? Int(listen.port)
        let host: String
        switch listen.host {
        case "0.0.0.0": host = "127.0.0.1"
        case "::": host = "[::1]"
        case let h where h.contains(":"): host = "[\(h)]"
        case let h: host = h
        }
        return "http://\(host):\(port)/"
    }

    /// One page of services of `type` (vpn or proxy) from `transport.discovery`, optionally of one
    /// country: the listing `skywire cli vpn list` shows, for the UI's exit list.
    func discoveryServices(_ params: [String: ControlValue]) async throws -> ControlValue {
        let typeName = try params.requiredString("type")
        guard let type = DiscoveryServiceType(rawValue: typeName) else {
            throw ControlError(.badRequest, "unknown service type \"\(typeName)\" (vpn or proxy)")
        }
        var query = ["limit=\(DiscoveryAPI.maxPageEntries)"]
        if let country = try params.optionalString("country"), !country.isEmpty {
            do { try DiscoveryValidation.checkCountry(country) } catch { throw ControlError(.badRequest, "country: \(error.message)") }
            query.append("country=\(country)")
        }
        guard !options.discovery.isEmpty else { throw ControlError(.unavailable, "transport.discovery is not set in the config") }
        let url: DiscoveryURL
        do { url = try DiscoveryURL(options.discovery) } catch { throw ControlError(.unavailable, "transport.discovery: \(error.message)") }
        let entries: [ServiceEntry]
        let target = "/v1/services/\(type.rawValue)?" + query.joined(separator: "&")
        do {
            // Blocking HTTP (up to its timeout) on the blocking pool.
            entries = try await BlockingPool.shared.run { () throws(DiscoveryError) -> [ServiceEntry] in
                let (status, body) = try DiscoveryHTTPClient.exchange(url, method: "GET", target: target)
                guard status == 200 else { throw DiscoveryError(status, DiscoveryHTTP.errorMessage(body)) }
                return try ServiceEntry.decodePage(body).entries
            }
        } catch let error as DiscoveryError {
            throw ControlError(.unavailable, "discovery: \(error.message)")
        } catch {
            throw ControlError(.unavailable, "discovery: \(error)")
        }
        return .array(try entries.map { try ControlValue(json: $0.json()) })
    }
}
