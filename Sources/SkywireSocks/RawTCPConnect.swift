#if canImport(Glibc)
import Glibc
#endif
import CSkywireShim
import NIOCore
import NIOPosix
import SkywireSystem
import SkywireTransport

/// An outgoing TCP connection made on an `EpollEventLoop` without NIO channels: a non-blocking
/// connect(2) with TCP_NODELAY, the destination's addresses (a domain name is resolved with
/// getaddrinfo(3) on NIO's thread pool, off the loop) tried in order within one overall timeout.
/// Errors are those `SkysocksServerApp.replyCode(for:)` maps like the NIO path's: `IOError` with the
/// connect errno (the first address's when all fail), `ChannelError.connectTimeout`, and
/// `SkysocksUnresolvableHost` when a name does not resolve. Loop thread only.
final class RawTCPConnect {
    private let loop: EpollEventLoop
    private let timeout: TimeAmount
    private var completion: ((Result<Int32, Error>) -> Void)?
    private var addresses: [SocketAddress] = []
    private var next = 0
    private var firstError: Error?
    private var descriptor: Int32 = -1
    private var timer: Scheduled<Void>?

    private init(loop: EpollEventLoop, timeout: TimeAmount, completion: @escaping (Result<Int32, Error>) -> Void) {
        self.loop = loop
        self.timeout = timeout
        self.completion = completion
    }

    /// Connects to `address`:`port`; `completion` runs on `loop` with the connected, non-blocking
    /// descriptor (the caller owns it) or the error.
    static func start(on loop: EpollEventLoop, to address: Socks5Address, port: UInt16, timeout: TimeAmount,
                      completion: @escaping (Result<Int32, Error>) -> Void) {
        let attempt = RawTCPConnect(loop: loop, timeout: timeout, completion: completion)
        if case .domain(let name) = address {
            attempt.armTimer()
            let transfer = LoopTransfer(value: attempt)
            NIOThreadPool.singleton.runIfActive(eventLoop: loop) { try resolve(name, port: port) }
                .assumeIsolated().whenComplete { result in
                    switch result {
                    case .success(let addresses): transfer.value.begin(addresses)
                    case .failure(let error): transfer.value.finish(.failure(error))
                    }
                }
        } else if let socketAddress = address.socketAddress(port: port) {
            attempt.begin([socketAddress])
        } else {
            completion(.failure(SocketAddressError.unsupported))
        }
    }

    /// getaddrinfo(3) for TCP; every address, in the resolver's order (RFC 6724).
    private static func resolve(_ name: String, port: UInt16) throws -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_TCP)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, String(port), &hints, &list) == 0, let first = list else {
            throw SkysocksUnresolvableHost(host: name)
        }
        defer { freeaddrinfo(first) }
        var addresses: [SocketAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry?.pointee {
            entry = info.ai_next
            guard let sa = info.ai_addr else { continue }
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: min(Int(info.ai_addrlen), raw.count)))
            }
            if let address = SocketAddress(storage: storage), !addresses.contains(address) {
                addresses.append(address)
            }
        }
        guard !addresses.isEmpty else { throw SkysocksUnresolvableHost(host: name) }
        return addresses
    }

    private func armTimer() {
        guard timer == nil else { return }
        timer = loop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            finish(.failure(ChannelError.connectTimeout(timeout)))
        }
    }

    private func begin(_ addresses: [SocketAddress]) {
        guard completion != nil else { return }
        self.addresses = addresses
        tryNext()
    }

    /// Starts connecting to the next address; completes when none is left.
    private func tryNext() {
        while completion != nil, next < addresses.count {
            let address = addresses[next]
            next += 1
            do {
                if try connect(to: address) {
                    let fd = descriptor
                    descriptor = -1
                    finish(.success(fd))
                }
                return
            } catch {
                closeDescriptor()
                if firstError == nil { firstError = error }
            }
        }
        finish(.failure(firstError ?? ChannelError.connectTimeout(timeout)))
    }

    /// True when connected at once; false when the connection is in progress (watched for).
    private func connect(to address: SocketAddress) throws -> Bool {
        let family = address.protocol == .inet6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
                        | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        descriptor = fd
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = address.withSockAddr { Glibc.connect(fd, $0, socklen_t($1)) }
        if rc == 0 { return true }
        let error = errno
        guard error == EINPROGRESS || error == EINTR else { throw IOError(errnoCode: error, reason: "connect") }
        armTimer()
        try loop.watch(fd, interest: .write) { [self] _ in connectReady() }
        return false
    }

    private func connectReady() {
        loop.unwatch(descriptor)
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = errno }
        if error == 0 {
            let fd = descriptor
            descriptor = -1
            finish(.success(fd))
            return
        }
        closeDescriptor()
        if firstError == nil { firstError = IOError(errnoCode: error, reason: "connect") }
        tryNext()
    }

    private func closeDescriptor() {
        guard descriptor >= 0 else { return }
        loop.unwatch(descriptor)
        Glibc.close(descriptor)
        descriptor = -1
    }

    private func finish(_ result: Result<Int32, Error>) {
        guard let completion else {
            if case .success(let fd) = result { Glibc.close(fd) }
            return
        }
        self.completion = nil
        timer?.cancel()
        timer = nil
        closeDescriptor()
        completion(result)
    }
}

/// getaddrinfo(3) found no address for a destination's domain name.
struct SkysocksUnresolvableHost: Error, CustomStringConvertible {
    let host: String
    var description: String { "\(host) did not resolve" }
}
