import NIOCore

/// The opening of a SkyNet stream (docs/skynet.md, "Wire"; docs/PROTOCOL.md §5 carries it): the
/// client's first bytes on a stream to the `skynet` app's port (57) are a `SkynetRequest`, and the
/// server answers with a `SkynetReply` before any forwarded byte. Pure: bytes in, values out.
public enum SkynetWire {
    /// VER of both messages; another value is refused.
    public static let version: UInt8 = 1
    /// `VER PORT(2, big-endian)`.
    public static let requestLength = 3
    /// `VER STATUS`.
    public static let replyLength = 2
}

/// STATUS of a `SkynetReply`.
public enum SkynetStatus: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Connected to the target: forwarded bytes follow.
    case ok = 0
    /// No forward is exposed on the requested port.
    case notExposed = 1
    /// The forward on that port does not admit the client's key (its `--wl`).
    case forbidden = 2
    /// The target refused the connection (nothing listens there).
    case refused = 3
    /// The target could not be reached in time (or its name did not resolve).
    case unreachable = 4
    /// The forward's connection cap is reached.
    case busy = 5
    /// Any other failure at the server.
    case failed = 6

    public var description: String {
        switch self {
        case .ok: "ok"
        case .notExposed: "port not exposed"
        case .forbidden: "key not whitelisted"
        case .refused: "connection refused by the target"
        case .unreachable: "target unreachable"
        case .busy: "too many connections"
        case .failed: "server failure"
        }
    }
}

/// Outcome of parsing one SkyNet message from the front of a buffer (nothing is consumed).
public enum SkynetParse<Value: Equatable & Sendable>: Equatable, Sendable {
    case incomplete
    /// The message and the bytes it occupied.
    case complete(Value, length: Int)
    case invalid(reason: String)
}

/// `VER PORT`: which exposed port of the server visor the stream is for.
public struct SkynetRequest: Equatable, Sendable {
    public var port: UInt16

    public init(port: UInt16) { self.port = port }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(SkynetWire.version)
        buffer.writeInteger(port)
    }

    public var encoded: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(SkynetWire.requestLength)
        write(to: &buffer)
        return buffer
    }

    /// Port 0 and another VER are invalid.
    public static func parse(_ buffer: ByteBuffer) -> SkynetParse<SkynetRequest> {
        let base = buffer.readerIndex
        guard let version = buffer.getInteger(at: base, as: UInt8.self) else { return .incomplete }
        guard version == SkynetWire.version else { return .invalid(reason: "request version \(version), expected \(SkynetWire.version)") }
        guard let port = buffer.getInteger(at: base + 1, as: UInt16.self) else { return .incomplete }
        guard port != 0 else { return .invalid(reason: "request for port 0") }
        return .complete(SkynetRequest(port: port), length: SkynetWire.requestLength)
    }
}

/// `VER STATUS`: the server's answer to a `SkynetRequest`.
public struct SkynetReply: Equatable, Sendable {
    public var status: SkynetStatus

    public init(status: SkynetStatus) { self.status = status }

    public var encoded: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(SkynetWire.replyLength)
        buffer.writeInteger(SkynetWire.version)
        buffer.writeInteger(status.rawValue)
        return buffer
    }

    /// An unknown STATUS or another VER is invalid.
    public static func parse(_ buffer: ByteBuffer) -> SkynetParse<SkynetReply> {
        let base = buffer.readerIndex
        guard let version = buffer.getInteger(at: base, as: UInt8.self) else { return .incomplete }
        guard version == SkynetWire.version else { return .invalid(reason: "reply version \(version), expected \(SkynetWire.version)") }
        guard let raw = buffer.getInteger(at: base + 1, as: UInt8.self) else { return .incomplete }
        guard let status = SkynetStatus(rawValue: raw) else { return .invalid(reason: "unknown reply status \(raw)") }
        return .complete(SkynetReply(status: status), length: SkynetWire.replyLength)
    }
}
