import NIOCore
import SkywireCrypto

/// The two transport kinds of docs/PROTOCOL.md.
public enum TransportType: String, Sendable, CaseIterable, Codable {
    case stcpr
    case sudph
}

/// Addresses to dial a peer at, from the config's static peers table or `tp add --addr`.
public struct PeerAddresses: Sendable, Equatable {
    public var stcpr: String?
    public var sudph: String?

    public init(stcpr: String? = nil, sudph: String? = nil) {
        self.stcpr = stcpr
        self.sudph = sudph
    }

    public func address(for type: TransportType) -> String? {
        switch type {
        case .stcpr: return stcpr
        case .sudph: return sudph
        }
    }
}

/// What the transport layer needs from the visor config.
public struct TransportSettings: Sendable {
    public var identity: KeyPair
    public var listenHost: String
    /// 0 disables the listener.
    public var stcprPort: Int
    public var sudphPort: Int
    public var peers: [PublicKey: PeerAddresses]
    /// Seconds allowed for a dial plus handshake.
    public var handshakeTimeout: Int64 = 10

    public init(identity: KeyPair, listenHost: String, stcprPort: Int, sudphPort: Int,
                peers: [PublicKey: PeerAddresses]) {
        self.identity = identity
        self.listenHost = listenHost
        self.stcprPort = stcprPort
        self.sudphPort = sudphPort
        self.peers = peers
    }
}

/// A snapshot of one transport for `tp ls` (docs/cli.md documents the JSON form).
public struct TransportInfo: Sendable, Equatable {
    public enum State: String, Sendable {
        case connecting, up, backoff, closed
    }

    public var id: String
    public var type: TransportType
    public var remoteKey: PublicKey
    public var remoteAddress: String
    public var initiator: Bool
    public var wanted: Bool
    public var state: State
    public var establishedAt: Int64?
    public var bytesSent: UInt64
    public var bytesReceived: UInt64
    public var streams: Int
    public var lastError: String?
    public var retryInSeconds: Int64?
    public var rttMillis: Double?
}

/// A user-facing transport error.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case badAddress, unreachable, handshake, notFound, timeout, closed }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// Parses "host:port" and "[v6]:port".
public enum HostPort {
    public static func parse(_ s: String) -> (host: String, port: Int)? {
        var host: Substring
        var portPart: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portPart = rest.dropFirst()
        } else {
            guard let colon = s.lastIndex(of: ":") else { return nil }
            host = s[..<colon]
            portPart = s[s.index(after: colon)...]
            if host.contains(":") { return nil }
        }
        guard !host.isEmpty, let port = Int(portPart), (1...65535).contains(port) else { return nil }
        return (String(host), port)
    }
}
