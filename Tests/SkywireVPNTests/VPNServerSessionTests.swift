import Logging
import NIOCore
import NIOEmbedded
import SkywireCrypto
import SkywireSystem
import SkywireTransport
import XCTest
@testable import SkywireVPN

/// An `AppStream` test double on an `EmbeddedEventLoop`: records what the server does to it.
final class RecordingStream: AppStream {
    let eventLoop: EventLoop
    let remoteKeyHex: String
    let localPort: UInt16 = VPNClient.serverPort
    let remotePort: UInt16 = 43
    var isWritable: Bool { true }
    private(set) var delegate: AppStreamDelegate?
    private(set) var written: [UInt8] = []
    private(set) var finished = false
    private(set) var resetCode: AppStreamResetCode?

    init(loop: EventLoop, key: PublicKey) {
        eventLoop = loop
        remoteKeyHex = key.hex
    }

    func setDelegate(_ delegate: AppStreamDelegate?) { self.delegate = delegate }
    func write(_ data: ByteBuffer) { written += data.readableBytesView }
    func finish() { finished = true }
    func reset(_ code: AppStreamResetCode) {
        guard resetCode == nil else { return }
        resetCode = code
        delegate?.appStream(self, didResetWith: code)
        delegate = nil
    }
    func setReadPaused(_ paused: Bool) {}

    /// Delivers bytes from the "client".
    func receive(_ bytes: [UInt8]) {
        var b = ByteBufferAllocator().buffer(capacity: bytes.count)
        b.writeBytes(bytes)
        delegate?.appStream(self, didReceive: b)
    }
}

final class VPNServerSessionTests: XCTestCase {
    var loop: EmbeddedEventLoop!
    var server: VPNServer!
    let timeout: TimeAmount = .seconds(10)

    override func setUp() {
        loop = EmbeddedEventLoop()
        let settings = TransportSettings(identity: KeyPair.generate(), listenHost: "127.0.0.1", stcprPort: 0, sudphPort: 0, peers: [:])
        let transports = TransportManager(settings: settings, group: loop, logger: Logger(label: "test"))
        server = VPNServer(arguments: VPNServerArguments(), transports: transports, localPort: VPNClient.serverPort,
                           stateDirectory: "/tmp/skwt-vpnsession-\(getpid())", logger: Logger(label: "test"))
    }

    override func tearDown() {
        try? loop.syncShutdownGracefully()
    }

    /// A stream that opens and never says hello is reset at the deadline and counted; one that
    /// sends half a hello too. Before the deadline nothing happens.
    func testSilentControlStreamIsResetAtTheDeadline() {
        let silent = RecordingStream(loop: loop, key: KeyPair.generate().publicKey)
        let partial = RecordingStream(loop: loop, key: KeyPair.generate().publicKey)
        server.accept(stream: silent, timeout: timeout)
        server.accept(stream: partial, timeout: timeout)
        partial.receive(Array(VPNMessage.clientHello(VPNClientHello(networks: [])).encoded().prefix(3)))
        loop.advanceTime(by: timeout - .seconds(1))
        XCTAssertNil(silent.resetCode)
        XCTAssertNil(partial.resetCode)
        XCTAssertEqual(server.status.helloTimeouts, 0)
        loop.advanceTime(by: .seconds(1))
        XCTAssertEqual(silent.resetCode, .protocolError)
        XCTAssertEqual(partial.resetCode, .protocolError)
        XCTAssertTrue(silent.written.isEmpty, "nothing is answered to a stream that said nothing")
        XCTAssertEqual(server.status.helloTimeouts, 2)
    }

    /// A refused client (here: the default whitelist admits nobody, so it answers FORBIDDEN) that never
    /// closes its side is reset at the deadline too, but not counted as a hello timeout; one
    /// that closes in time is left alone.
    func testRefusedStreamThatStaysOpenIsReset() throws {
        let lingering = RecordingStream(loop: loop, key: KeyPair.generate().publicKey)
        let polite = RecordingStream(loop: loop, key: KeyPair.generate().publicKey)
        for s in [lingering, polite] {
            server.accept(stream: s, timeout: timeout)
            s.receive(VPNMessage.clientHello(VPNClientHello(networks: [])).encoded())
            XCTAssertTrue(s.finished)
            var d = VPNMessageDecoder()
            d.append(s.written)
            guard case .forbidden = try d.next() else { return XCTFail("expected FORBIDDEN, got \(s.written)") }
        }
        polite.delegate?.appStreamDidReceiveFinish(polite)
        loop.advanceTime(by: timeout)
        XCTAssertEqual(lingering.resetCode, .protocolError)
        XCTAssertNil(polite.resetCode)
        XCTAssertEqual(server.status.helloTimeouts, 0)
    }

    /// A stream closed by the client before the deadline is not reset or counted.
    func testClosedStreamIsNotCounted() {
        let s = RecordingStream(loop: loop, key: KeyPair.generate().publicKey)
        server.accept(stream: s, timeout: timeout)
        s.delegate?.appStream(s, didResetWith: .appClosed)
        loop.advanceTime(by: timeout * 2)
        XCTAssertNil(s.resetCode)
        XCTAssertEqual(server.status.helloTimeouts, 0)
    }
}
