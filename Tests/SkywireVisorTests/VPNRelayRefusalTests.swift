import SkywireCrypto
@testable import SkywireTransport
import XCTest
@testable import SkywireVisor

/// `vpn start` refuses a path that only goes through a dmsg relay unless `--allow-relay`.
final class VPNRelayRefusalTests: XCTestCase {
    private let server = KeyPair.generate().publicKey

    private func transport(_ type: TransportType, to pk: PublicKey, state: TransportInfo.State = .up) -> TransportInfo {
        TransportInfo(id: "t\(type.rawValue)", type: type, remoteKey: pk, remoteAddress: "x", initiator: true, wanted: true,
                      state: state, establishedAt: nil, bytesSent: 0, bytesReceived: 0, streams: 0, lastError: nil,
                      retryInSeconds: nil, rttMillis: nil)
    }

    func testOnlyARelayPathIsRefusedWithTheReason() throws {
        let refusal = try XCTUnwrap(Visor.relayOnlyRefusal(to: server, transports: [transport(.dmsg, to: server)], allowRelay: false))
        XCTAssertTrue(refusal.contains("the VPN is routed over stcpr or sudph, not through dmsg relays"), refusal)
        XCTAssertTrue(refusal.contains("--allow-relay"), refusal)
    }

    func testTheFlagOrADirectTransportLetsItThrough() {
        XCTAssertNil(Visor.relayOnlyRefusal(to: server, transports: [transport(.dmsg, to: server)], allowRelay: true))
        for direct in [TransportType.stcpr, .sudph] {
            XCTAssertNil(Visor.relayOnlyRefusal(to: server, transports: [transport(.dmsg, to: server), transport(direct, to: server)],
                                                allowRelay: false))
        }
        // A direct transport that is down does not count; one to another key neither.
        XCTAssertNotNil(Visor.relayOnlyRefusal(to: server, transports: [transport(.dmsg, to: server),
                                                                        transport(.stcpr, to: server, state: .backoff),
                                                                        transport(.stcpr, to: KeyPair.generate().publicKey)],
                                               allowRelay: false))
    }
}
