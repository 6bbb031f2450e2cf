import Logging
import NIOCore
import NIOPosix
import SkywireSystem
import SkywireTransport
import SkywireIO

/// The server app's end of a UDP ASSOCIATE (RFC 1928 §7, framing in docs/socks.md): a UDP socket at the
/// exit; frames from the stream are sent to their DST.ADDR/DST.PORT (domain names resolved here), and
/// datagrams arriving on the socket go back over the stream with a header naming their source.
/// The association ends when the stream does. Confined to the stream's event loop.
final class SkysocksServerUDPAssociation: AppStreamDelegate {
    /// Domain names resolved per association that are remembered.
    static let maxCachedNames = 64
    /// Datagrams held per name while it resolves.
    static let maxPendingPerName = 16

    private let app: SkysocksServerApp
    private let stream: AppStream
    private let channel: Channel
    /// True when `channel` is a dual-stack IPv6 socket (IPv4 destinations are sent as ::ffff:a.b.c.d).
    private let dualStack: Bool
    private var decoder = SkysocksUDPFrameDecoder()
    private var resolved: [String: Socks5Address] = [:]
    private var resolving: [String: [(port: UInt16, payload: ByteBuffer)]] = [:]
    private var onDone: (() -> Void)?
    private var closed = false

    private init(app: SkysocksServerApp, stream: AppStream, channel: Channel, dualStack: Bool) {
        self.app = app
        self.stream = stream
        self.channel = channel
        self.dualStack = dualStack
    }

    /// Binds the exit socket (dual-stack `[::]:0`, else `0.0.0.0:0`), answers the request with its
    /// address (behind `before`, held dialogue output, in one write), and reports the association
    /// (not yet owning the stream) to `completion`.
    static func start(app: SkysocksServerApp, stream: AppStream, request: Socks5Request, before: ByteBuffer?,
                      completion: @escaping (Result<SkysocksServerUDPAssociation, Error>) -> Void) {
        let loop = stream.eventLoop
        let group = app.group
        let anyIPv6 = try? SocketAddress(ipAddress: "::", port: 0)
        let anyIPv4 = try? SocketAddress(ipAddress: "0.0.0.0", port: 0)
        let first = anyIPv6.map { bindSkysocksUDP(to: $0, reuseAddress: false, consumerLoop: loop, group: group) }
            ?? loop.makeFailedFuture(SocketAddressError.unsupported)
        first.flatMapError { error in
            guard let anyIPv4 else { return loop.makeFailedFuture(error) }
            return bindSkysocksUDP(to: anyIPv4, reuseAddress: false, consumerLoop: loop, group: group)
        }.assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                completion(.failure(error))
            case .success(let (channel, sink)):
                let dualStack = channel.localAddress?.protocol == .inet6
                let association = SkysocksServerUDPAssociation(app: app, stream: stream, channel: channel,
                                                               dualStack: dualStack)
                sink.value.deliver = { association.datagramFromNetwork($0) }
                let port = UInt16(channel.localAddress?.port ?? 0)
                let bound: Socks5Address = dualStack ? .ipv6(0, 0) : .ipv4(0)
                var out = before ?? channel.allocator.buffer(capacity: 22)
                Socks5Reply.write(code: .succeeded, boundAddress: bound, boundPort: port, to: &out)
                stream.write(out)
                app.logger.debug("UDP association", metadata: ["remote": "\(stream.remoteKeyHex)", "port": "\(port)"])
                completion(.success(association))
            }
        }
    }

    /// Takes the stream over; `pending` are stream bytes that arrived during setup.
    func begin(pending: CircularBuffer<ByteBuffer>, finReceived: Bool, onDone: @escaping () -> Void) {
        self.onDone = onDone
        stream.setDelegate(self)
        for data in pending { appStream(stream, didReceive: data) }
        if finReceived { appStreamDidReceiveFinish(stream) }
    }

    func abort() {
        guard !closed else { return }
        stream.reset(.appClosed)
        close()
    }

    func close() {
        guard !closed else { return }
        closed = true
        channel.close(promise: nil)
        stream.setDelegate(nil)
        if let onDone {
            self.onDone = nil
            onDone()
        }
    }

    // MARK: AppStreamDelegate

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        guard !closed else { return }
        decoder.append(data)
        var sent = false
        while let datagram = decoder.next() {
            sent = relayToNetwork(datagram) || sent
        }
        if sent { channel.flush() }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        guard !closed else { return }
        stream.finish()
        close()
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        close()
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {}

    // MARK: Relaying

    /// One datagram from the client; returns true when something was written to the socket.
    private func relayToNetwork(_ datagram: ByteBuffer) -> Bool {
        let header: Socks5UDPHeader
        let headerLength: Int
        switch Socks5UDPHeader.parse(datagram) {
        case .failure(let error):
            app.logger.debug("dropping UDP frame", metadata: ["reason": "\(error)"])
            app.counters.update { $0.datagramsDropped += 1 }
            return false
        case .success(let parsed):
            (header, headerLength) = parsed
        }
        var payload = datagram
        payload.moveReaderIndex(forwardBy: headerLength)
        if case .domain(let name) = header.address {
            if let address = resolved[name] {
                return send(payload, to: address, port: header.port)
            }
            resolve(name, port: header.port, payload: payload)
            return false
        }
        return send(payload, to: header.address, port: header.port)
    }

    private func send(_ payload: ByteBuffer, to address: Socks5Address, port: UInt16) -> Bool {
        if let (ip, refusal) = app.refusal(for: address) {
            app.logger.debug("UDP datagram refused by --secure", metadata: [
                "destination": "\(ip):\(port)", "rule": "\(refusal)", "remote": "\(stream.remoteKeyHex)",
            ])
            app.counters.update { $0.datagramsRefused += 1 }
            return false
        }
        var target = address
        if dualStack, case .ipv4(let a) = address {
            target = .ipv6(0, 0xFFFF_0000_0000 | UInt64(a))  // ::ffff:a.b.c.d (RFC 4291 §2.5.5.2)
        }
        guard dualStack || target.addressType == .ipv4, let destination = target.socketAddress(port: port) else {
            app.counters.update { $0.datagramsDropped += 1 }
            return false
        }
        channel.write(AddressedEnvelope(remoteAddress: destination, data: payload), promise: nil)
        app.counters.update { $0.datagramsRelayed += 1 }
        return true
    }

    /// Resolves `name` at the exit (getaddrinfo on `BlockingPool.shared`), holding a few datagrams meanwhile;
    /// keeps the first address `--secure` allows (or, when it allows none, the first, which `send` refuses).
    private func resolve(_ name: String, port: UInt16, payload: ByteBuffer) {
        if let pending = resolving[name] {
            if pending.count < Self.maxPendingPerName {
                resolving[name, default: []].append((port, payload))
            } else {
                app.counters.update { $0.datagramsDropped += 1 }
            }
            return
        }
        resolving[name] = [(port, payload)]
        BlockingPool.shared.runFuture(on: stream.eventLoop) {
            try SocketAddress.resolveAll(host: name, port: 0)
        }.assumeIsolated().whenComplete { [self] result in
            let waiting = resolving.removeValue(forKey: name) ?? []
            guard !closed else { return }
            guard case .success(let addresses) = result,
                  let socketAddress = (try? app.admitted(addresses))?.first ?? addresses.first,
                  let address = Socks5Address(socketAddress) else {
                app.logger.debug("UDP destination did not resolve", metadata: ["name": "\(name)"])
                app.counters.update { $0.datagramsDropped += UInt64(waiting.count) }
                return
            }
            if resolved.count >= Self.maxCachedNames { resolved.removeAll() }
            resolved[name] = address
            var sent = false
            for item in waiting { sent = send(item.payload, to: address, port: item.port) || sent }
            if sent { channel.flush() }
        }
    }

    /// A datagram from the network: framed back to the client with its source as DST.ADDR/DST.PORT.
    private func datagramFromNetwork(_ envelope: AddressedEnvelope<ByteBuffer>) {
        guard !closed, let source = Socks5Address(envelope.remoteAddress), let port = envelope.remoteAddress.port else {
            return
        }
        let header = Socks5UDPHeader(address: source, port: UInt16(port))
        if writeUDPFrame(envelope.data, header: header, to: stream, allocator: channel.allocator) {
            app.counters.update { $0.datagramsRelayed += 1 }
        } else {
            app.counters.update { $0.datagramsDropped += 1 }
        }
    }
}
