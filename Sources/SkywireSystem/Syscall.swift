#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An errno-carrying error that names the system call that failed.
public struct SystemError: Error, CustomStringConvertible, Equatable, Sendable {
    public let call: String
    public let errno: Int32

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// The outcome of a non-blocking call: a value, or "would block" (EAGAIN/EWOULDBLOCK).
public enum IOResult<T> {
    case processed(T)
    case wouldBlock
}

/// Runs a system call, retrying on EINTR; throws `SystemError` naming `name` on failure.
/// Every raw syscall in the project goes through this helper (or `syscallNonBlocking`).
@inline(__always)
@discardableResult
public func syscall<T: FixedWidthInteger>(_ name: @autoclosure () -> String,
                                          _ body: () throws -> T) throws -> T {
    while true {
        let result = try body()
        if result == -1 {
            let err = Glibc.errno
            if err == EINTR { continue }
            throw SystemError(call: name(), errno: err)
        }
        return result
    }
}

/// Like `syscall`, but reports EAGAIN/EWOULDBLOCK as `.wouldBlock` instead of throwing.
@inline(__always)
public func syscallNonBlocking<T: FixedWidthInteger>(_ name: @autoclosure () -> String,
                                                     _ body: () throws -> T) throws -> IOResult<T> {
    while true {
        let result = try body()
        if result == -1 {
            let err = Glibc.errno
            if err == EINTR { continue }
            if err == EAGAIN || err == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(call: name(), errno: err)
        }
        return .processed(result)
    }
}
