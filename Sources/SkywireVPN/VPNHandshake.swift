import SkywireSystem

/// The client side of the control-stream handshake (docs/vpn.md §2): send CLIENT_HELLO, then
/// one answer decides. Bytes in, outcome out. SERVER_OK is followed by IPV6_LEASE (§2.1); an
/// exit that sends none (protocol v1 without IPv6) is accepted without IPv6 when the caller's
/// grace time passes (`finishWithoutIPv6`).
public struct VPNClientHandshake: Sendable {
    public enum Outcome: Equatable, Sendable {
        case accepted(VPNServerOK)
        case forbidden(String)
        case failed(String)
        /// SERVER_OK leased an address the client cannot take (`VPNServerOK.clash`): the client
        /// refuses it and sets nothing up.
        case unsafeLease(String)
    }

    private var decoder = VPNMessageDecoder()
    public private(set) var outcome: Outcome?
    public let hello: VPNClientHello
    /// Every IPv4 network of the client (addresses and routes), the lease is checked against;
    /// the hello carries the first `maxClientNetworks`.
    public let localNetworks: [IPPrefix]
    /// The client's IPv6 networks, the IPv6 lease is checked against.
    public let localNetworks6: [IPPrefix]
    /// SERVER_OK accepted, waiting for IPV6_LEASE.
    public private(set) var waitingForIPv6: VPNServerOK?

    public init(localNetworks: [IPPrefix]) {
        self.localNetworks = localNetworks.filter { $0.family == .v4 }
        localNetworks6 = localNetworks.filter { $0.family == .v6 }
        hello = VPNClientHello(networks: Array(self.localNetworks.prefix(VPNMessage.maxClientNetworks)))
    }

    /// The grace time for IPV6_LEASE passed: accepted without IPv6 (`VPNServerOK.noIPv6Lease`).
    public mutating func finishWithoutIPv6() -> Outcome? {
        guard outcome == nil, let ok = waitingForIPv6 else { return nil }
        waitingForIPv6 = nil
        outcome = .accepted(ok)
        return outcome
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
            case .serverOK(let ok):
                guard waitingForIPv6 == nil else { throw .unexpected("a second SERVER_OK") }
                if let clash = ok.clash(with: localNetworks) {
                    decided = .unsafeLease("the exit leased \(ok.clientAddress) (gateway \(ok.serverAddress)), which overlaps "
                        + "this host's network \(clash.network): refused, it would take over addresses of that network")
                } else {
                    waitingForIPv6 = ok
                    continue
                }
            case .ipv6Lease(let offer):
                guard var ok = waitingForIPv6 else { throw .unexpected("IPV6_LEASE before SERVER_OK") }
                waitingForIPv6 = nil
                ok.ipv6 = offer
                if let lease = offer.lease, let clash = lease.clash(with: localNetworks6) {
                    // IPv6 only is refused: it stays blocked, IPv4 goes on.
                    ok.ipv6 = .unavailable("the exit leased \(lease.clientAddress), which overlaps this host's network \(clash.network)")
                }
                decided = .accepted(ok)
            case .forbidden(let reason): decided = .forbidden(reason)
            case .error(let reason): decided = .failed(reason)
            case .clientHello: throw .unexpected("CLIENT_HELLO from the server")
            case .unknown where waitingForIPv6 != nil: continue
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
            case .serverOK, .forbidden, .error, .ipv6Lease:
                throw .unexpected("a server message from the client")
            }
        }
        return got
    }
}

extension VPNServerOK {
    /// The first of the client's `networks` the leased block (client prefix, which holds the
    /// gateway too) overlaps, or nil. The same networks the server's pool avoids when reported
    /// (`VPNAddressPool.shortestAvoided` and longer), and any network whose own address falls
    /// inside the block: a hostile exit could otherwise lease an address in the client's LAN
    /// and become the "gateway" for its router and neighbours.
    public func clash(with networks: [IPPrefix]) -> IPPrefix? {
        let block = clientAddress.network
        return networks.first { n in
            n.family == .v4 && (block.contains(n.address) || (n.length >= VPNAddressPool.shortestAvoided && n.overlaps(block)))
        }
    }
}

extension VPNIPv6Lease {
    /// The first of the client's IPv6 `networks` (not link-local) the leased prefix overlaps,
    /// or nil: such a lease would take over addresses the client reaches on its own links.
    public func clash(with networks: [IPPrefix]) -> IPPrefix? {
        let block = clientAddress.network
        return networks.first { n in
            n.family == .v6 && n.length > 0 && n.address.nonPublicRange?.kind != .linkLocal && n.overlaps(block)
        }
    }
}
