// The PTY app's framed protocol (docs/pty.md, "Protocol"): one mux stream to port 22 carries one
// session. Every frame is `type:u8 | length:u32 big-endian | payload[length]`; the client's first
// frame is `open`, then both ends exchange data and control frames until the host's `exit` (or
// `error`). Pure: bytes in, frames out; the host app and `skywire cli pty` drive it.

/// What a session runs (`open`'s mode byte).
public enum PtyMode: UInt8, Sendable, CaseIterable {
    /// An interactive login shell on a pseudo-terminal.
    case shell = 1
    /// A command (argv) without a terminal: stdout and stderr apart.
    case exec = 2
    /// A file sent to the host: argv[0] is the remote path; `fileMode` its mode.
    case copyPut = 3
    /// A file fetched from the host: argv[0] is the remote path.
    case copyGet = 4
}

/// The client's opening request (`open` frame).
public struct PtyOpenRequest: Sendable, Equatable {
    public var mode: PtyMode
    /// Command and arguments (exec), or the remote path alone (cp); empty for a shell.
    public var argv: [String]
    /// The client's `TERM` (shell), e.g. `xterm-256color`; empty: the host's default.
    public var term: String
    public var size: PtyWindowSize
    /// Permission bits of the file sent (cp-put); 0 otherwise.
    public var fileMode: UInt32

    public init(mode: PtyMode, argv: [String] = [], term: String = "", size: PtyWindowSize = .init(rows: 0, columns: 0),
                fileMode: UInt32 = 0) {
        self.mode = mode
        self.argv = argv
        self.term = term
        self.size = size
        self.fileMode = fileMode
    }
}

/// A terminal's size in character cells (struct winsize's ws_row/ws_col).
public struct PtyWindowSize: Sendable, Equatable {
    public var rows: UInt16
    public var columns: UInt16
    public init(rows: UInt16, columns: UInt16) {
        self.rows = rows
        self.columns = columns
    }
}

/// How the remote command ended (`exit` frame).
public enum PtyExitStatus: Sendable, Equatable {
    /// exit(2) with this status.
    case exited(UInt8)
    /// Killed by this signal number.
    case signalled(UInt8)

    /// The exit status a shell gives this ending: the status, or 128 + the signal.
    public var shellStatus: Int32 {
        switch self {
        case .exited(let code): Int32(code)
        case .signalled(let signal): PtyProtocol.signalStatusBase + Int32(signal)
        }
    }
}

/// The signals a client may send (Linux numbers, `signal` frame); others are refused as malformed.
public enum PtySignal: UInt8, Sendable, CaseIterable {
    case hangup = 1, interrupt = 2, quit = 3, kill = 9, terminate = 15
}

/// A file's metadata, sent by the host before the contents of a cp-get.
public struct PtyFileInfo: Sendable, Equatable {
    public var mode: UInt32
    public var size: UInt64
    public init(mode: UInt32, size: UInt64) {
        self.mode = mode
        self.size = size
    }
}

/// One frame (docs/pty.md, "Protocol", the table of types).
public enum PtyFrame: Sendable, Equatable {
    case open(PtyOpenRequest)
    /// Bytes for the command's standard input (or the file of a cp-put).
    case stdin([UInt8])
    /// The command's standard output (the terminal's output for a shell; the file of a cp-get).
    case stdout([UInt8])
    case stderr([UInt8])
    case resize(PtyWindowSize)
    case signal(PtySignal)
    case exit(PtyExitStatus)
    /// The sender's data direction ended (client: stdin closed; host: the cp-get file ended).
    case eof
    /// The session cannot go on (host: refused open, spawn failure; either end: bad frame).
    case error(String)
    /// SHA-256 of the file transferred, sent after its `eof` (cp both ways).
    case digest([UInt8])
    case fileInfo(PtyFileInfo)

    public var type: PtyFrameType {
        switch self {
        case .open: .open
        case .stdin: .stdin
        case .stdout: .stdout
        case .stderr: .stderr
        case .resize: .resize
        case .signal: .signal
        case .exit: .exit
        case .eof: .eof
        case .error: .error
        case .digest: .digest
        case .fileInfo: .fileInfo
        }
    }
}

public enum PtyFrameType: UInt8, Sendable, CaseIterable {
    case open = 0x01, stdin = 0x02, stdout = 0x03, stderr = 0x04, resize = 0x05, signal = 0x06
    case exit = 0x07, eof = 0x08, error = 0x09, digest = 0x0A, fileInfo = 0x0B
}

/// A frame the decoder refuses; the session ends with an `error` frame carrying `message`.
public struct PtyProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The protocol's limits and constants.
public enum PtyProtocol {
    /// The protocol version in `open` (its first byte).
    public static let version: UInt8 = 1
    /// type (1) + length (4).
    public static let headerLength = frameHeader.length
    /// `type | length:u32` (no version byte: `open` carries it); a header is refused for its
    /// length, then its type.
    public static let frameHeader = AppFrameHeader(version: nil, lengthBytes: MemoryLayout<UInt32>.size,
                                                   maxPayload: maxPayload, order: .lengthThenType)
    /// The largest payload of any frame: a frame announcing more is refused before it is read.
    public static let maxPayload = 64 * 1024
    /// Data frames are cut to this size by senders.
    public static let dataChunk = 32 * 1024
    /// The most arguments `open` may carry.
    public static let maxArguments = 1024
    /// The most bytes of an `error` message kept.
    public static let maxErrorMessage = 1024
    /// SHA-256 output length.
    public static let digestLength = 32
    /// A signalled command's shell status is this plus the signal number.
    public static let signalStatusBase: Int32 = 128
    /// The status `pty exec --timeout` ends with when the command overran (as timeout(1)).
    public static let timeoutStatus: Int32 = 124
    /// The highest Linux signal number an `exit` frame may name.
    static let maxSignalNumber: UInt8 = 64
    /// Permission bits a cp may set (no set-id bits: `rwxrwxrwx` and sticky).
    public static let fileModeMask: UInt32 = 0o1777
}
