import SkywireSystem

/// The client side of the control-stream handshake (docs/vpn.md §2): send CLIENT_HELLO, then
/// one answer decides. Bytes in, outcome out.
public struct VPNClientHandshake: Sendable {
    public enum Outcome: Equatable, Sendable {
        case accepted(VPNServerOK)
        case forbidden(String)
        case failed(String)
    }

    private var decoder = VPNMessageDecoder()
    public private(set) var outcome: Outcome?
    public let hello: VPNClientHello

    public init(localNetworks: [IPPrefix]) {
        hello = VPNClientHello(networks: Array(localNetworks.filter { $0.family == .v4 }.prefix(VPNMessage.maxClientNetworks)))
    }

    /// The bytes to send first.
    public var helloBytes: [UInt8] { VPNMessage.clientHello(hello).encoded() }

    /// Feeds stream bytes; returns the outcome once the answer is complete (only once).
    /// Messages after the answer are ignored unless malformed.
    public mutating func receive<C: Collection>(_ bytes: C) throws(VPNProtocolError) -> Outcome? where C.Element == UInt8 {
        decoder.append(bytes)
        var decided: Outcome?
        while let message = try decoder.next() {
            guard outcome == nil else { continue }
            switch message {
            case .serverOK(let ok): decided = .accepted(ok)
            case .forbidden(let reason): decided = .forbidden(reason)
            case .error(let reason): decided = .failed(reason)
            case .clientHello: throw .unexpected("CLIENT_HELLO from the server")
            case .unknown(let type, _): throw .unexpected("type \(type) before the answer")
            }
            outcome = decided
        }
        return decided
    }
}

/// The server side: wait for CLIENT_HELLO (exactly one), then answer with `answer(_:)`.
public struct VPNServerHandshake: Sendable {
    private var decoder = VPNMessageDecoder()
    public private(set) var hello: VPNClientHello?

    public init() {}

    /// Feeds stream bytes; returns the hello once it is complete (only once). A second hello or
    /// a server-side message from the client is an error; unknown types after the hello are ignored.
    public mutating func receive<C: Collection>(_ bytes: C) throws(VPNProtocolError) -> VPNClientHello? where C.Element == UInt8 {
        decoder.append(bytes)
        var got: VPNClientHello?
        while let message = try decoder.next() {
            switch message {
            case .clientHello(let h):
                guard hello == nil else { throw .unexpected("a second CLIENT_HELLO") }
                guard h.version == VPNMessage.version else { throw .unsupportedVersion(h.version) }
                hello = h
                got = h
            case .unknown where hello != nil:
                continue
            case .unknown(let type, _):
                throw .unexpected("type \(type) before CLIENT_HELLO")
            case .serverOK, .forbidden, .error:
                throw .unexpected("a server message from the client")
            }
        }
        return got
    }
}
