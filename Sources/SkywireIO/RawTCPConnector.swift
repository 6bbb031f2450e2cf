#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireSystem

/// Opens an outgoing TCP connection on an `EpollEventLoop` without NIO channels: names are
/// resolved with getaddrinfo(3) off the loop thread, then each address is tried in turn with a
/// non-blocking connect(2) until one succeeds or `timeout` (for the whole attempt) passes.
public enum RawTCPConnector {
    /// Connects to `host` (IP literal or DNS name) and `port`; `completion` runs once on `loop`
    /// with the connected descriptor (non-blocking, TCP_NODELAY) or the first error
    /// (`SystemError`; ETIMEDOUT when the deadline passed; `ResolutionError` when the name does not resolve).
    public static func connect(on loop: EpollEventLoop, host: String, port: Int, timeout: TimeAmount,
                               _ completion: @escaping (Result<OwnedDescriptor, Error>) -> Void) {
        let deadline = NIODeadline.now() + timeout
        SocketAddress.resolveOffLoop(host: host, port: port, on: loop) { result in
            switch result {
            case .success(let addresses): connect(on: loop, to: addresses, deadline: deadline, completion)
            case .failure(let error): completion(.failure(error))
            }
        }
    }

    /// Tries `addresses` in order until one connects or `deadline` passes. Call on `loop`.
    public static func connect(on loop: EpollEventLoop, to addresses: [SocketAddress], deadline: NIODeadline,
                               _ completion: @escaping (Result<OwnedDescriptor, Error>) -> Void) {
        precondition(loop.inEventLoop)
        ConnectAttempt(loop: loop, addresses: addresses, deadline: deadline, completion: completion).next()
    }
}

/// One connect over a list of addresses; lives in its loop's watch or timer until it completes.
private final class ConnectAttempt {
    private let loop: EpollEventLoop
    private var addresses: ArraySlice<SocketAddress>
    private let deadline: NIODeadline
    private var completion: ((Result<OwnedDescriptor, Error>) -> Void)?
    private var socket: OwnedDescriptor?
    private var timer: LoopTimer?
    private var firstError: Error?

    init(loop: EpollEventLoop, addresses: [SocketAddress], deadline: NIODeadline,
         completion: @escaping (Result<OwnedDescriptor, Error>) -> Void) {
        self.loop = loop
        self.addresses = addresses[...]
        self.deadline = deadline
        self.completion = completion
    }

    func next() {
        guard let address = addresses.popFirst() else {
            finish(.failure(firstError ?? SystemError(call: "getaddrinfo: no address", errno: EHOSTUNREACH)))
            return
        }
        guard NIODeadline.now() < deadline else {
            finish(.failure(SystemError(call: "connect(\(address))", errno: ETIMEDOUT)))
            return
        }
        do {
            let (socket, inProgress) = try RawTCPSocket.connect(to: address)
            guard inProgress, try !RawTCPSocket.connectFinished(socket.raw, to: address) else {
                finish(.success(socket))
                return
            }
            self.socket = socket
            try loop.watch(socket.raw, interest: .write) { [self] _ in connectEnded(address) }
            timer = loop.setTimer(deadline: deadline) { [self] in
                timer = nil
                abandon(SystemError(call: "connect(\(address))", errno: ETIMEDOUT))
            }
        } catch {
            if firstError == nil { firstError = error }
            socket?.close(); socket = nil
            next()
        }
    }

    private func connectEnded(_ address: SocketAddress) {
        guard let socket else { return }
        if let timer { loop.cancelTimer(timer) }
        timer = nil
        loop.unwatch(socket.raw)
        self.socket = nil
        if let error = RawTCPSocket.connectError(socket.raw) {
            socket.close()
            if firstError == nil { firstError = SystemError(call: "connect(\(address))", errno: error.errno) }
            next()
        } else {
            finish(.success(socket))
        }
    }

    private func abandon(_ error: Error) {
        if let socket {
            loop.unwatch(socket.raw)
            socket.close()
            self.socket = nil
        }
        finish(.failure(error))
    }

    private func finish(_ result: Result<OwnedDescriptor, Error>) {
        guard let completion else { return }
        self.completion = nil
        completion(result)
    }
}

extension SocketAddress {
    /// `host` (IP literal or DNS name) resolved without blocking `loop`: a literal at once, a
    /// name by getaddrinfo(3) on `BlockingPool.shared` (it can block for seconds while DNS is
    /// down), every address in the resolver's order. `completion` runs on `loop`; when called on
    /// `loop` with a literal, before this returns. `resolve` is replaceable for tests.
    public static func resolveOffLoop(host: String, port: Int, on loop: any EventLoop,
                               resolve: @escaping @Sendable (String, Int) throws -> [SocketAddress] = { try resolveAll(host: $0, port: $1) },
                               _ completion: @escaping (Result<[SocketAddress], Error>) -> Void) {
        if let literal = try? SocketAddress(ipAddress: host, port: port) {
            if loop.inEventLoop {
                completion(.success([literal]))
            } else {
                let carried = LoopTransfer(value: completion)
                loop.execute { carried.value(.success([literal])) }
            }
            return
        }
        let carried = LoopTransfer(value: completion)
        BlockingPool.shared.submit({ try resolve(host, port) }) { result in
            loop.execute { carried.value(result) }
        }
    }

    /// getaddrinfo(3) for TCP: every address of `host` in the resolver's order. Blocking.
    public static func resolveAll(host: String, port: Int) throws -> [SocketAddress] {
        BlockingPool.assertMayBlock("getaddrinfo(\(host))")
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_TCP)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let list else {
            throw ResolutionError(host: host, message: String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(list) }
        var out: [SocketAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = list
        while let info = cursor {
            if let sa = info.pointee.ai_addr, let address = SocketAddress(sa, host: host) { out.append(address) }
            cursor = info.pointee.ai_next
        }
        guard !out.isEmpty else { throw ResolutionError(host: host, message: "no IPv4 or IPv6 address") }
        return out
    }
}

/// getaddrinfo(3) found nothing for a name.
public struct ResolutionError: Error, CustomStringConvertible {
    public let host: String
    public let message: String
    public var description: String { "cannot resolve \(host): \(message)" }
}
