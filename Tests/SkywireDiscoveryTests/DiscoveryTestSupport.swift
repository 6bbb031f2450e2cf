import SkywireCrypto
import SkywireDiscovery
@testable import SkywireDiscoveryServer

/// Deterministic test identities.
enum TestKeys {
    static func pair(_ n: UInt8) -> KeyPair { try! KeyPair.fromSeed([UInt8](repeating: n, count: 32)) }
}

/// A signed request for `kp` at `nowMs`.
func signedRequest(_ kp: KeyPair, _ method: String, _ target: String, body: String = "", nowMs: Int64,
                   nonce: [UInt8] = SecureRandom.bytes(16)) -> DiscoveryRequest {
    let b = Array(body.utf8)
    let h = DiscoverySigning.sign(keyPair: kp, method: method, target: target, body: b, timestampMs: nowMs, nonce: nonce)
    return DiscoveryRequest(method: method, target: target, headers: h.fields, body: b)
}

func getRequest(_ target: String) -> DiscoveryRequest {
    DiscoveryRequest(method: "GET", target: target, headers: [], body: [])
}
