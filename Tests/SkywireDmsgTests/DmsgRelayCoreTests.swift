import NIOCore
import XCTest
import SkywireCrypto
@testable import SkywireDmsg

/// The relay's routing core (PROTOCOL.md §7.3–§7.4): frames in, actions out.
final class DmsgRelayCoreTests: XCTestCase {
    private let a = try! KeyPair.fromSeed([UInt8](repeating: 0xA1, count: 32)).publicKey
    private let b = try! KeyPair.fromSeed([UInt8](repeating: 0xB2, count: 32)).publicKey
    private let c = try! KeyPair.fromSeed([UInt8](repeating: 0xC3, count: 32)).publicKey
    private let window: UInt32 = 64 * 1024

    private func relay(_ limits: DmsgRelayCore.Limits = .init()) -> DmsgRelayCore {
        var core = DmsgRelayCore(limits: limits)
        XCTAssertEqual(core.connect(1, key: a), [])
        XCTAssertEqual(core.connect(2, key: b), [])
        return core
    }

    /// A (client 1) opens stream 1 to B (client 2), which accepts: relay id 2 on B's session.
    private func openStream(_ core: inout DmsgRelayCore, acceptWindow: UInt32? = nil) {
        XCTAssertEqual(core.receive(from: 1, .open(stream: 1, peer: b, window: window)),
                       [.send(2, .open(stream: 2, peer: a, window: window))])
        XCTAssertEqual(core.receive(from: 2, .openOK(stream: 2, window: acceptWindow ?? window)),
                       [.send(1, .openOK(stream: 1, window: acceptWindow ?? window))])
    }

    func testOpenAcceptDataWindowClose() {
        var core = relay()
        openStream(&core)
        XCTAssertEqual(core.streamCount, 1)
        let payload = ByteBuffer(string: "hello")
        XCTAssertEqual(core.receive(from: 1, .data(stream: 1, payload: payload)), [.send(2, .data(stream: 2, payload: payload))])
        XCTAssertEqual(core.receive(from: 2, .data(stream: 2, payload: payload)), [.send(1, .data(stream: 1, payload: payload))])
        XCTAssertEqual(core.receive(from: 2, .window(stream: 2, increment: 5)), [.send(1, .window(stream: 1, increment: 5))])
        XCTAssertEqual(core.receive(from: 1, .close(stream: 1, code: .normal)), [.send(2, .close(stream: 2, code: .normal))])
        XCTAssertEqual(core.streamCount, 0)
        XCTAssertEqual(core.counters.streamsOpened, 1)
        XCTAssertEqual(core.counters.bytesOpenerToAcceptor, 5)
        XCTAssertEqual(core.counters.bytesAcceptorToOpener, 5)
        XCTAssertEqual(core.receive(from: 2, .data(stream: 2, payload: payload)), [], "a late frame is dropped")
    }

    func testPingIsAnsweredToTheSender() {
        var core = relay()
        XCTAssertEqual(core.receive(from: 2, .ping(9)), [.send(2, .pong(9))])
        XCTAssertEqual(core.receive(from: 2, .pong(9)), [])
        XCTAssertEqual(core.receive(from: 77, .ping(9)), [], "nothing for a client that is not connected")
    }

    func testOpenRefusals() {
        var core = relay(.init(maxStreamsPerClient: 1))
        XCTAssertEqual(core.receive(from: 1, .open(stream: 1, peer: c, window: window)),
                       [.send(1, .openReject(stream: 1, code: .noSession))])
        XCTAssertEqual(core.receive(from: 1, .open(stream: 2, peer: b, window: window)),
                       [.send(1, .openReject(stream: 2, code: .protocolError))], "client ids are odd")
        XCTAssertEqual(core.receive(from: 1, .open(stream: 1, peer: b, window: window)),
                       [.send(1, .openReject(stream: 1, code: .protocolError))], "client ids increase")
        XCTAssertEqual(core.receive(from: 1, .open(stream: 3, peer: a, window: window)),
                       [.send(1, .openReject(stream: 3, code: .noSession))], "not to itself")
        XCTAssertEqual(core.receive(from: 1, .open(stream: 5, peer: b, window: window)),
                       [.send(2, .open(stream: 2, peer: a, window: window))])
        XCTAssertEqual(core.receive(from: 1, .open(stream: 7, peer: b, window: window)),
                       [.send(1, .openReject(stream: 7, code: .limit))], "source at its stream cap")
        XCTAssertEqual(core.connect(3, key: c), [])
        XCTAssertEqual(core.receive(from: 3, .open(stream: 1, peer: b, window: window)),
                       [.send(3, .openReject(stream: 1, code: .limit))], "destination at its stream cap")
        XCTAssertEqual(core.receive(from: 2, .openReject(stream: 2, code: .refused)),
                       [.send(1, .openReject(stream: 5, code: .refused))])
        XCTAssertEqual(core.counters.refusals, ["no-session": 2, "protocol": 2, "limit": 2, "refused": 1])
        XCTAssertEqual(core.streamCount, 0)
    }

    func testWindowsAreClampedAndDataBeyondCreditResetsTheStream() {
        var core = relay(.init(maxWindow: 10))
        XCTAssertEqual(core.receive(from: 1, .open(stream: 1, peer: b, window: 1000)),
                       [.send(2, .open(stream: 2, peer: a, window: 10))])
        XCTAssertEqual(core.receive(from: 2, .openOK(stream: 2, window: 1000)), [.send(1, .openOK(stream: 1, window: 10))])
        let six = ByteBuffer(repeating: 1, count: 6)
        XCTAssertEqual(core.receive(from: 1, .data(stream: 1, payload: six)).count, 1)
        // 4 bytes of credit left: 6 more is a violation; both sides are told.
        XCTAssertEqual(core.receive(from: 1, .data(stream: 1, payload: six)),
                       [.send(1, .close(stream: 1, code: .protocolError)), .send(2, .close(stream: 2, code: .protocolError))])
        XCTAssertEqual(core.counters.streamProtocolErrors, 1)
        XCTAssertEqual(core.streamCount, 0)
    }

    func testCreditAboveMaxWindowResetsTheStream() {
        var core = relay(.init(maxWindow: 10))
        XCTAssertEqual(core.receive(from: 1, .open(stream: 1, peer: b, window: 10)).count, 1)
        XCTAssertEqual(core.receive(from: 2, .openOK(stream: 2, window: 10)).count, 1)
        XCTAssertEqual(core.receive(from: 1, .data(stream: 1, payload: ByteBuffer(repeating: 1, count: 4))).count, 1)
        // B consumed 4: crediting 4 is fine (A's credit back to 10), 1 more is not.
        XCTAssertEqual(core.receive(from: 2, .window(stream: 2, increment: 4)), [.send(1, .window(stream: 1, increment: 4))])
        XCTAssertEqual(core.receive(from: 2, .window(stream: 2, increment: 1)),
                       [.send(2, .close(stream: 2, code: .protocolError)), .send(1, .close(stream: 1, code: .protocolError))])
    }

    func testNoEarlyDataAndNoAnswerFromTheOpener() {
        var core = relay()
        XCTAssertEqual(core.receive(from: 1, .open(stream: 1, peer: b, window: window)).count, 1)
        XCTAssertEqual(core.receive(from: 1, .data(stream: 1, payload: ByteBuffer(string: "x"))),
                       [.send(1, .openReject(stream: 1, code: .protocolError)), .send(2, .close(stream: 2, code: .protocolError))])
        XCTAssertEqual(core.receive(from: 1, .open(stream: 3, peer: b, window: window)),
                       [.send(2, .open(stream: 4, peer: a, window: window))], "relay ids on B's session increase by 2")
        XCTAssertEqual(core.receive(from: 2, .data(stream: 4, payload: ByteBuffer(string: "x"))),
                       [.send(2, .close(stream: 4, code: .protocolError)), .send(1, .openReject(stream: 3, code: .protocolError))],
                       "the acceptor sends nothing but its answer first")
    }

    func testDisconnectEndsEveryStreamOfTheSession() {
        var core = relay()
        openStream(&core)
        XCTAssertEqual(core.receive(from: 1, .open(stream: 3, peer: b, window: window)).count, 1)
        XCTAssertEqual(core.receive(from: 2, .open(stream: 1, peer: a, window: window)),
                       [.send(1, .open(stream: 2, peer: b, window: window))])
        // In the order of B's stream ids: 1 (B opened it: A's 2), 2 (A's 1), 4 (A's 3, unanswered).
        XCTAssertEqual(core.disconnect(2), [.send(1, .close(stream: 2, code: .peerGone)),
                                            .send(1, .close(stream: 1, code: .peerGone)),
                                            .send(1, .openReject(stream: 3, code: .noSession))])
        XCTAssertEqual(core.streams(of: 1), 0)
        XCTAssertNil(core.client(for: b))
        XCTAssertEqual(core.disconnect(2), [], "idempotent")
        XCTAssertEqual(core.receive(from: 1, .open(stream: 5, peer: b, window: window)),
                       [.send(1, .openReject(stream: 5, code: .noSession))])
    }

    func testNewerSessionOfTheSameKeyReplacesTheOld() {
        var core = relay()
        openStream(&core)
        XCTAssertEqual(core.connect(3, key: b), [.send(1, .close(stream: 1, code: .peerGone)),
                                                 .close(2, reason: "replaced by a newer session of \(b.short)")])
        XCTAssertEqual(core.client(for: b), 3)
        XCTAssertEqual(core.clientCount, 2)
        XCTAssertEqual(core.counters.replacedSessions, 1)
        XCTAssertEqual(core.receive(from: 1, .open(stream: 3, peer: b, window: window)),
                       [.send(3, .open(stream: 2, peer: a, window: window))])
    }

    func testClientCap() {
        var core = DmsgRelayCore(limits: .init(maxClients: 1))
        XCTAssertEqual(core.connect(1, key: a), [])
        XCTAssertEqual(core.connect(2, key: b), [.close(2, reason: "relay full: 1 clients")])
        XCTAssertEqual(core.clientCount, 1)
        XCTAssertEqual(core.counters.refusedClientsFull, 1)
        XCTAssertEqual(core.receive(from: 2, .ping(1)), [])
    }

    func testAcceptorClosingBeforeItAnswersRefuses() {
        var core = relay()
        XCTAssertEqual(core.receive(from: 1, .open(stream: 1, peer: b, window: window)).count, 1)
        XCTAssertEqual(core.receive(from: 2, .close(stream: 2, code: .normal)),
                       [.send(1, .openReject(stream: 1, code: .refused))])
        // The opener giving up before the answer: the acceptor gets CLOSE.
        XCTAssertEqual(core.receive(from: 1, .open(stream: 3, peer: b, window: window)).count, 1)
        XCTAssertEqual(core.receive(from: 1, .close(stream: 3, code: .normal)), [.send(2, .close(stream: 4, code: .normal))])
        XCTAssertEqual(core.receive(from: 2, .openOK(stream: 4, window: window)), [], "a late answer is dropped")
    }
}
