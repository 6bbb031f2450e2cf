import NIOCore
#if canImport(Glibc)
import Glibc
#endif
import SkywireConfig
import SkywireCrypto

/// The transport kinds of docs/PROTOCOL.md: direct (stcpr, sudph) and through a dmsg relay
/// server (docs/dmsg.md: the stcpr handshake and records inside a relay stream).
public enum TransportType: String, Sendable, CaseIterable, Codable {
    case stcpr
    case sudph
    case dmsg

    /// A path without a relay in the middle (what the VPN requires unless allowed otherwise).
    public var isDirect: Bool { self != .dmsg }
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
    /// REKEY_AFTER_TIME for sudph sending keys (PROTOCOL.md §4.3); tests shorten it with
    /// the environment variable SKYWIRE_SUDPH_REKEY_SECONDS.
    public var sudphRekeyInterval: TimeAmount = Self.rekeyIntervalFromEnvironment()
    /// Accepted stcpr sockets in all (`StcprAdmission.Limits.total`, 4096); the scale bench
    /// (bench/scale.sh, docs/scale.md) raises it with SKYWIRE_STCPR_MAX_CONNECTIONS to measure
    /// 10,000 transports. Each socket holds a descriptor: keep it under the visor's RLIMIT_NOFILE.
    public var stcprMaxConnections: Int = Self.stcprMaxConnectionsFromEnvironment()
    /// dmsg relay servers to keep a session with (`transport.dmsg_servers`).
    public var dmsgServers: [DmsgServerAddress] = []
    /// While a peer is reached only through a relay, how often a direct transport is retried
    /// (30 s doubling to 5 min); tests shorten it with SKYWIRE_DIRECT_RETRY_SECONDS (the first
    /// wait; the longest is ten times it).
    public var directRetry: DirectRetrySchedule = Self.directRetryFromEnvironment()

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
    /// dmsg: the relay server the transport runs through, and its TCP address (`HOST:PORT`; the
    /// VPN routes it around its tunnel when allowed to use the relay).
    public var relayKey: PublicKey? = nil
    public var relayAddress: String? = nil
}

/// A user-facing transport error.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case badAddress, unreachable, handshake, notFound, timeout, closed }
    public let kind: Kind
    public let message: String
    /// Set when a stream open was refused or reset by the remote app or visor.
    public let streamCode: AppStreamResetCode?

    public init(_ kind: Kind, _ message: String, streamCode: AppStreamResetCode? = nil) {
        self.kind = kind
        self.message = message
        self.streamCode = streamCode
    }

    public var description: String { message }
}


extension PeerAddresses {
    /// The address for one transport type, if the peers table has it.
    public func address(for type: TransportType) -> HostPort? {
        switch type {
        case .stcpr: return stcpr
        case .sudph: return sudph
        case .dmsg: return nil  // through the relay servers, not an address
        }
    }
}

extension TransportSettings {
    static let defaultRekeySeconds: Int64 = 120

    static func rekeyIntervalFromEnvironment() -> TimeAmount {
        if let raw = getenv("SKYWIRE_SUDPH_REKEY_SECONDS"), let s = Int64(String(cString: raw)), s > 0 {
            return .seconds(s)
        }
        return .seconds(defaultRekeySeconds)
    }

    static func directRetryFromEnvironment() -> DirectRetrySchedule {
        if let raw = getenv("SKYWIRE_DIRECT_RETRY_SECONDS"), let s = Int64(String(cString: raw)), s > 0 {
            return DirectRetrySchedule(initial: .seconds(s), maximum: .seconds(s * DirectRetrySchedule.maximumPerInitial))
        }
        return .standard
    }

    static func stcprMaxConnectionsFromEnvironment() -> Int {
        if let raw = getenv("SKYWIRE_STCPR_MAX_CONNECTIONS"), let n = Int(String(cString: raw)), n > 0 {
            return n
        }
        return StcprAdmission.Limits().total
    }
}
