// Encoding and incremental decoding of `PtyFrame` (docs/pty.md, "Protocol").

extension PtyFrame {
    /// The frame's bytes: header, then payload.
    public var encoded: [UInt8] {
        var payload: [UInt8] = []
        switch self {
        case .open(let r):
            payload.append(PtyProtocol.version)
            payload.append(r.mode.rawValue)
            payload.appendBigEndian(r.size.rows)
            payload.appendBigEndian(r.size.columns)
            payload.appendBigEndian(r.fileMode)
            payload.appendString16(r.term)
            payload.appendBigEndian(UInt16(clamping: r.argv.count))
            for arg in r.argv.prefix(PtyProtocol.maxArguments) { payload.appendString16(arg) }
        case .stdin(let b), .stdout(let b), .stderr(let b), .digest(let b):
            payload = b
        case .resize(let s):
            payload.appendBigEndian(s.rows)
            payload.appendBigEndian(s.columns)
        case .signal(let s):
            payload.append(s.rawValue)
        case .exit(.exited(let code)):
            payload = [PtyExitKind.exited, code]
        case .exit(.signalled(let signal)):
            payload = [PtyExitKind.signalled, signal]
        case .eof:
            break
        case .error(let message):
            payload = Array(PtyProtocol.displayableErrorMessage(message).utf8)
        case .fileInfo(let info):
            payload.appendBigEndian(info.mode)
            payload.appendBigEndian(info.size)
        }
        var out: [UInt8] = []
        out.reserveCapacity(PtyProtocol.headerLength + payload.count)
        out.append(type.rawValue)
        out.appendBigEndian(UInt32(payload.count))
        out.append(contentsOf: payload)
        return out
    }

    /// A data frame's bytes without building the enum (the hot path of stdout and file data).
    public static func encodeData(_ type: PtyFrameType, _ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        out.append(type.rawValue)
        out.appendBigEndian(UInt32(bytes.count))
        out.append(contentsOf: bytes)
    }

    /// One payload of type `type` (known from the header); refuses a malformed payload.
    public static func decode(type: PtyFrameType, payload p: ArraySlice<UInt8>) throws(PtyProtocolError) -> PtyFrame {
        var r = AppPayloadReader<PtyFrameType, PtyProtocolError>(bytes: p, type: type)
        let frame: PtyFrame
        switch type {
        case .open:
            let version = try r.u8()
            guard version == PtyProtocol.version else { throw PtyProtocolError("open: protocol version \(version), expected \(PtyProtocol.version)") }
            let rawMode = try r.u8()
            guard let mode = PtyMode(rawValue: rawMode) else { throw PtyProtocolError("open: unknown mode \(rawMode)") }
            let size = PtyWindowSize(rows: try r.u16(), columns: try r.u16())
            let fileMode = try r.u32()
            guard fileMode & ~PtyProtocol.fileModeMask == 0 else {
                throw PtyProtocolError("open: file mode 0o\(String(fileMode, radix: 8)) has bits beyond 0o1777")
            }
            let term = try r.string16()
            let argc = Int(try r.u16())
            guard argc <= PtyProtocol.maxArguments else { throw PtyProtocolError("open: \(argc) arguments, at most \(PtyProtocol.maxArguments)") }
            var argv: [String] = []
            for _ in 0..<argc { argv.append(try r.string16()) }
            frame = .open(PtyOpenRequest(mode: mode, argv: argv, term: term, size: size, fileMode: fileMode))
        case .stdin: frame = .stdin(Array(try r.take(r.remaining)))
        case .stdout: frame = .stdout(Array(try r.take(r.remaining)))
        case .stderr: frame = .stderr(Array(try r.take(r.remaining)))
        case .resize: frame = .resize(PtyWindowSize(rows: try r.u16(), columns: try r.u16()))
        case .signal:
            let raw = try r.u8()
            guard let signal = PtySignal(rawValue: raw) else { throw PtyProtocolError("signal: \(raw) is not one a client may send") }
            frame = .signal(signal)
        case .exit:
            let kind = try r.u8(), value = try r.u8()
            switch kind {
            case PtyExitKind.exited: frame = .exit(.exited(value))
            case PtyExitKind.signalled:
                guard value > 0, value <= PtyProtocol.maxSignalNumber else { throw PtyProtocolError("exit: no signal \(value)") }
                frame = .exit(.signalled(value))
            default: throw PtyProtocolError("exit: unknown kind \(kind)")
            }
        case .eof: frame = .eof
        case .error:
            guard p.count <= PtyProtocol.maxErrorMessage else { throw PtyProtocolError("error: message longer than \(PtyProtocol.maxErrorMessage) bytes") }
            guard let message = String(validating: try r.take(r.remaining), as: UTF8.self) else {
                throw PtyProtocolError("error: the message is not UTF-8")
            }
            // Shown on the client's terminal: a peer's escape sequences must not reach it.
            frame = .error(PtyProtocol.displayableErrorMessage(message))
        case .digest:
            guard p.count == PtyProtocol.digestLength else { throw PtyProtocolError("digest: \(p.count) bytes, expected \(PtyProtocol.digestLength)") }
            frame = .digest(Array(try r.take(r.remaining)))
        case .fileInfo:
            let mode = try r.u32()
            // As `open`'s file mode: permission and sticky bits only (the host sends them masked).
            guard mode & ~PtyProtocol.fileModeMask == 0 else {
                throw PtyProtocolError("file-info: file mode 0o\(String(mode, radix: 8)) has bits beyond 0o1777")
            }
            frame = .fileInfo(PtyFileInfo(mode: mode, size: try r.u64()))
        }
        guard r.isAtEnd else { throw PtyProtocolError("\(type): \(r.remaining) trailing bytes") }
        return frame
    }
}

/// `exit` frame kinds.
enum PtyExitKind {
    static let exited: UInt8 = 0
    static let signalled: UInt8 = 1
}

extension PtyFrame: AppFrame {
    public static var frameHeader: AppFrameHeader { PtyProtocol.frameHeader }
}

/// Splits a byte stream into PTY frames (`AppFrameDecoder`): an oversized length is named before
/// an unknown type.
public typealias PtyFrameDecoder = AppFrameDecoder<PtyFrame>

extension AppPayloadReader where Failure == PtyProtocolError {
    /// `length:u16 | UTF-8`; invalid UTF-8 and NUL are refused.
    mutating func string16() throws(PtyProtocolError) -> String {
        let s = try utf8(Int(try u16()))
        guard !s.utf8.contains(0) else { throw failure("a string contains NUL") }
        return s
    }
}

extension [UInt8] {
    /// `length:u16 | UTF-8`, cut at 65535 bytes.
    fileprivate mutating func appendString16(_ s: String) {
        let bytes = s.utf8.prefix(Int(UInt16.max))
        appendBigEndian(UInt16(bytes.count))
        append(contentsOf: bytes)
    }
}

extension PtyProtocol {
    /// An `error` frame's message as sent and as shown: control characters (C0, DEL, C1: a
    /// terminal's escape sequences) as spaces, at most `maxErrorMessage` bytes of UTF-8, cut at a
    /// character boundary. Applying it twice changes nothing.
    public static func displayableErrorMessage(_ message: String) -> String {
        var out = ""
        var bytes = 0
        for scalar in message.unicodeScalars {
            let shown: Unicode.Scalar = scalar.properties.generalCategory == .control ? " " : scalar
            let n = String(shown).utf8.count
            guard bytes + n <= maxErrorMessage else { break }
            out.unicodeScalars.append(shown)
            bytes += n
        }
        return out
    }
}
