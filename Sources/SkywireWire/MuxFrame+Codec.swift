// Encoding and decoding of mux frames, PROTOCOL.md §5.

/// Why bytes are not a valid mux frame, or why a frame could not be encoded.
public enum MuxFrameError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Zero bytes: not even a type.
    case empty
    case unknownType(UInt8)
    /// Shorter than the type's minimum length.
    case truncated(MuxFrameType, length: Int, minimum: Int)
    /// A fixed-size frame with a different length.
    case wrongLength(MuxFrameType, length: Int, expected: Int)
    /// Stream id 0 is never valid.
    case zeroStreamID(MuxFrameType)
    /// DATA must carry at least one byte.
    case emptyData(streamID: MuxStreamID)
    /// WINDOW increments are > 0.
    case zeroWindowIncrement(streamID: MuxStreamID)
    /// OPEN_REJECT / CLOSE reasons are UTF-8.
    case invalidUTF8Reason(MuxFrameType)
    /// Encoding only: the output buffer is too small.
    case bufferTooSmall(needed: Int, available: Int)

    public var description: String {
        switch self {
        case .empty: "empty mux frame"
        case .unknownType(let t): "unknown mux frame type 0x\(String(t, radix: 16))"
        case .truncated(let t, let n, let min): "\(t) frame truncated: \(n) bytes, at least \(min) needed"
        case .wrongLength(let t, let n, let exp): "\(t) frame has \(n) bytes, expected exactly \(exp)"
        case .zeroStreamID(let t): "\(t) frame names stream id 0"
        case .emptyData(let id): "DATA frame for stream \(id) has an empty payload"
        case .zeroWindowIncrement(let id): "WINDOW frame for stream \(id) has a zero increment"
        case .invalidUTF8Reason(let t): "\(t) frame reason is not valid UTF-8"
        case .bufferTooSmall(let need, let have): "output buffer too small: \(need) bytes needed, \(have) available"
        }
    }
}

// MARK: - Decoding

extension MuxFrame where Payload == Range<Int> {
    /// Decodes one whole frame (§5). DATA and DATAGRAM payloads are returned as offsets into `bytes`,
    /// so the hot path never copies. Any malformed input throws; nothing traps.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(MuxFrameError) -> MuxFrame<Range<Int>> {
        typealias L = MuxFrameLayout
        let n = bytes.count
        guard n >= L.typeSize else { throw .empty }
        guard let type = MuxFrameType(rawValue: bytes[0]) else { throw .unknownType(bytes[0]) }

        @inline(__always) func exactly(_ expected: Int) throws(MuxFrameError) {
            if n < expected { throw .truncated(type, length: n, minimum: expected) }
            if n != expected { throw .wrongLength(type, length: n, expected: expected) }
        }
        @inline(__always) func atLeast(_ minimum: Int) throws(MuxFrameError) {
            if n < minimum { throw .truncated(type, length: n, minimum: minimum) }
        }
        @inline(__always) func streamID() throws(MuxFrameError) -> MuxStreamID {
            let raw: UInt32 = bytes.readBigEndian(at: L.typeSize)
            if raw == 0 { throw .zeroStreamID(type) }
            return MuxStreamID(raw)
        }
        @inline(__always) func reason(from offset: Int) throws(MuxFrameError) -> String {
            let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<n])
            guard let s = String(validating: slice, as: UTF8.self) else { throw .invalidUTF8Reason(type) }
            return s
        }

        switch type {
        case .open:
            try exactly(L.openLength)
            return .open(streamID: try streamID(),
                         destinationPort: bytes.readBigEndian(at: 5),
                         sourcePort: bytes.readBigEndian(at: 7),
                         initialWindow: bytes.readBigEndian(at: 9))
        case .openOK:
            try exactly(L.openOKLength)
            return .openOK(streamID: try streamID(), initialWindow: bytes.readBigEndian(at: 5))
        case .openReject:
            try atLeast(L.openRejectHeader)
            return .openReject(streamID: try streamID(), code: MuxErrorCode(rawValue: bytes[5]),
                               reason: try reason(from: L.openRejectHeader))
        case .data:
            try atLeast(L.dataHeader)
            let id = try streamID()
            guard n > L.dataHeader else { throw .emptyData(streamID: id) }
            return .data(streamID: id, payload: L.dataHeader..<n)
        case .window:
            try exactly(L.windowLength)
            let id = try streamID()
            let increment: UInt32 = bytes.readBigEndian(at: 5)
            guard increment > 0 else { throw .zeroWindowIncrement(streamID: id) }
            return .window(streamID: id, increment: increment)
        case .fin:
            try exactly(L.finLength)
            return .fin(streamID: try streamID())
        case .reset:
            try exactly(L.resetLength)
            return .reset(streamID: try streamID(), code: MuxErrorCode(rawValue: bytes[5]))
        case .datagram:
            try atLeast(L.datagramHeader)
            return .datagram(destinationPort: bytes.readBigEndian(at: 1), sourcePort: bytes.readBigEndian(at: 3),
                             payload: L.datagramHeader..<n)
        case .ping:
            try exactly(L.pingLength)
            return .ping(opaque: bytes.readBigEndian(at: 1))
        case .pong:
            try exactly(L.pingLength)
            return .pong(opaque: bytes.readBigEndian(at: 1))
        case .close:
            try atLeast(L.closeHeader)
            return .close(code: MuxErrorCode(rawValue: bytes[1]), reason: try reason(from: L.closeHeader))
        }
    }

    /// Cheap check for the VPN/stream hot path: if `bytes` is a valid DATA frame, its stream and payload
    /// offsets; otherwise nil (use `decode` for the error).
    @inline(__always)
    public static func peekData(_ bytes: UnsafeRawBufferPointer) -> (streamID: MuxStreamID, payload: Range<Int>)? {
        guard bytes.count > MuxFrameLayout.dataHeader, bytes[0] == MuxFrameType.data.rawValue else { return nil }
        let raw: UInt32 = bytes.readBigEndian(at: MuxFrameLayout.typeSize)
        guard raw != 0 else { return nil }
        return (MuxStreamID(raw), MuxFrameLayout.dataHeader..<bytes.count)
    }
}

extension MuxFrame where Payload == ArraySlice<UInt8> {
    /// Decodes a frame held in an array; payloads are slices sharing the array's storage (no copy).
    public static func decode(_ bytes: [UInt8]) throws(MuxFrameError) -> MuxFrame<ArraySlice<UInt8>> {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(MuxFrameError) in try MuxFrame<Range<Int>>.decode(raw) }
        }
        return try result.get().mapPayload { bytes[$0] }
    }
}

// MARK: - Encoding

extension MuxFrame where Payload: WirePayload {
    /// Exact encoded length, type byte included.
    public var encodedLength: Int {
        typealias L = MuxFrameLayout
        switch self {
        case .open: return L.openLength
        case .openOK: return L.openOKLength
        case .openReject(_, _, let reason): return L.openRejectHeader + reason.utf8.count
        case .data(_, let p): return L.dataHeader + p.count
        case .window: return L.windowLength
        case .fin: return L.finLength
        case .reset: return L.resetLength
        case .datagram(_, _, let p): return L.datagramHeader + p.count
        case .ping, .pong: return L.pingLength
        case .close(_, let reason): return L.closeHeader + reason.utf8.count
        }
    }

    /// Appends the encoded frame to `buffer`.
    public func encode(into buffer: inout [UInt8]) {
        buffer.reserveCapacity(buffer.count + encodedLength)
        write(to: &buffer)
    }

    /// Encodes into `buffer` starting at its first byte and returns the number of bytes written.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) throws(MuxFrameError) -> Int {
        let needed = encodedLength
        guard buffer.count >= needed else { throw .bufferTooSmall(needed: needed, available: buffer.count) }
        var sink = RawBufferSink(buffer)
        write(to: &sink)
        return sink.position
    }

    /// A freshly allocated encoding (tests and control paths).
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    @inline(__always)
    func write<S: ByteSink>(to sink: inout S) {
        sink.appendByte(type.rawValue)
        switch self {
        case .open(let id, let dst, let src, let w):
            sink.appendBigEndian(id.rawValue)
            sink.appendBigEndian(dst)
            sink.appendBigEndian(src)
            sink.appendBigEndian(w)
        case .openOK(let id, let w):
            sink.appendBigEndian(id.rawValue)
            sink.appendBigEndian(w)
        case .openReject(let id, let code, let reason):
            sink.appendBigEndian(id.rawValue)
            sink.appendByte(code.rawValue)
            sink.appendUTF8(reason)
        case .data(let id, let p):
            sink.appendBigEndian(id.rawValue)
            p.withUnsafeBytes { sink.appendBytes($0) }
        case .window(let id, let inc):
            sink.appendBigEndian(id.rawValue)
            sink.appendBigEndian(inc)
        case .fin(let id):
            sink.appendBigEndian(id.rawValue)
        case .reset(let id, let code):
            sink.appendBigEndian(id.rawValue)
            sink.appendByte(code.rawValue)
        case .datagram(let dst, let src, let p):
            sink.appendBigEndian(dst)
            sink.appendBigEndian(src)
            p.withUnsafeBytes { sink.appendBytes($0) }
        case .ping(let o), .pong(let o):
            sink.appendBigEndian(o)
        case .close(let code, let reason):
            sink.appendByte(code.rawValue)
            sink.appendUTF8(reason)
        }
    }
}

extension MuxFrameLayout {
    /// `reason` cut to at most `maxReasonBytes` UTF-8 bytes at a character boundary.
    public static func truncatedReason(_ reason: String) -> String {
        guard reason.utf8.count > maxReasonBytes else { return reason }
        var out = ""
        var used = 0
        for ch in reason {
            let size = ch.utf8.count
            if used + size > maxReasonBytes { break }
            out.append(ch)
            used += size
        }
        return out
    }
}
