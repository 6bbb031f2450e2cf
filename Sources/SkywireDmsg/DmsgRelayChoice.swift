import SkywireCrypto

/// Which relay servers a client uses when several are listed (PROTOCOL.md §7.5): rendezvous
/// (highest-random-weight) hashing of the client's key over the relays' keys. Each relay's score
/// for a client is the first 8 bytes, big-endian, of keyed BLAKE2b `MAC(relay key, client key)`
/// (`HandshakeMAC.mac`, 16-byte output); the client takes the `count` highest. Any two parties
/// with the same list compute the same choice, so a visor looking for a peer that lists no
/// relays tries the peer's likely relays first; adding or removing one relay moves only the
/// clients whose top `count` it enters or leaves (about `count / relays` of them).
public enum DmsgRelayChoice {
    /// How many relays a visor keeps sessions with by default.
    public static let defaultCount = 2

    /// The relay's score for `client` (higher wins).
    public static func score(client: PublicKey, relay: PublicKey) -> UInt64 {
        let mac = HandshakeMAC.mac(key: relay.bytes, client.bytes)
        return mac.prefix(8).reduce(0) { ($0 << 8) | UInt64($1) }
    }

    /// The `count` relays with the highest score for `client`, best first; ties (never seen in
    /// practice) go to the smaller key. Duplicates in `relays` count once.
    public static func pick(client: PublicKey, relays: [PublicKey], count: Int = defaultCount) -> [PublicKey] {
        let scored = Set(relays).map { (key: $0, score: score(client: client, relay: $0)) }
        let ranked = scored.sorted { a, b in a.score != b.score ? a.score > b.score : a.key < b.key }
        return ranked.prefix(max(0, count)).map(\.key)
    }
}
