import SkywireCrypto

/// Constants of the discovery wire contract (docs/discovery.md).
public enum DiscoveryAPI {
    public static let version = "0.1.0"
    /// First line of every signed string ("Signed writes").
    public static let signatureContext = "SKYWIRE-DISCOVERY-1"
    /// Largest request body accepted (larger: 413).
    public static let maxBodyBytes = 4096
    /// A write's timestamp may differ from the service clock by at most this (else 401).
    public static let maxClockSkewMs: Int64 = 60_000
    /// A nonce is remembered per key this long; a repeat inside the window is a replay (401).
    public static let nonceWindowMs: Int64 = 120_000
    /// Default entry lifetime in seconds (`--ttl`).
    public static let defaultTTLSeconds = 60
    /// A BIND is re-sent this often so the NAT mapping stays open.
    public static let bindIntervalSeconds = 15
    /// At most this many `stcpr` addresses per visor.
    public static let maxStcprAddresses = 8
    /// At most this many dmsg relay keys (`dmsg`) in a transport entry.
    public static let maxDmsgRelays = 8
    public static let maxLabelCharacters = 64
    /// Entries per page of `GET /v1/services/{type}`: `limit` is at most this, and an answer
    /// without `limit` (clients from before paging) holds at most this many. 500 entries of the
    /// largest size (~1.4 KB) stay well under a client's `DiscoveryHTTP.maxResponseBytes`.
    public static let maxPageEntries = 500
    /// A request's head and body must arrive within this many seconds of the connection opening
    /// or of the previous answer on it (slowloris); else the connection is closed.
    public static let requestDeadlineSeconds = 10

    public static let headerPK = "Skywire-PK"
    public static let headerTimestamp = "Skywire-Timestamp"
    public static let headerNonce = "Skywire-Nonce"
    public static let headerSignature = "Skywire-Signature"
}

/// The service types visors advertise (`/v1/services/{type}`).
public enum DiscoveryServiceType: String, Sendable, CaseIterable, Hashable {
    case vpn
    case proxy
    /// A dmsg relay server (docs/dmsg.md): its address is its transport entry's `stcpr`.
    case dmsg
}

/// The signature headers of one write ("Signed writes").
public struct DiscoverySignedHeaders: Sendable, Equatable {
    public var publicKeyHex: String
    public var timestampMs: Int64
    public var nonceHex: String
    public var signatureHex: String

    /// The four headers, in the order the contract lists them.
    public var fields: [(name: String, value: String)] {
        [(DiscoveryAPI.headerPK, publicKeyHex),
         (DiscoveryAPI.headerTimestamp, String(timestampMs)),
         (DiscoveryAPI.headerNonce, nonceHex),
         (DiscoveryAPI.headerSignature, signatureHex)]
    }
}

/// Builds and signs discovery writes.
public enum DiscoverySigning {
    /// The signed string: context, METHOD, PATH (with query, as sent), PK, TIMESTAMP, NONCE and
    /// hex(BLAKE2b-256(body)), joined by `\n`, no trailing newline.
    public static func signedBytes(method: String, target: String, publicKeyHex: String,
                                   timestampMs: Int64, nonceHex: String, body: [UInt8]) -> [UInt8] {
        let lines = [DiscoveryAPI.signatureContext, method, target, publicKeyHex, String(timestampMs),
                     nonceHex, HexCoding.encode(Blake2b.hash256(body))]
        return Array(lines.joined(separator: "\n").utf8)
    }

    /// Signs a write with `keyPair` (Ed25519, crypto_sign_detached). `nonce` defaults to 16 random bytes.
    public static func sign(keyPair: KeyPair, method: String, target: String, body: [UInt8],
                            timestampMs: Int64, nonce: [UInt8] = SecureRandom.bytes(16)) -> DiscoverySignedHeaders {
        let pk = keyPair.publicKey.hex
        let nonceHex = HexCoding.encode(nonce)
        let msg = signedBytes(method: method, target: target, publicKeyHex: pk,
                              timestampMs: timestampMs, nonceHex: nonceHex, body: body)
        return DiscoverySignedHeaders(publicKeyHex: pk, timestampMs: timestampMs, nonceHex: nonceHex,
                                      signatureHex: HexCoding.encode(keyPair.sign(msg)))
    }
}
