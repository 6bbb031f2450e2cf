import CSkywireShim
#if canImport(Glibc)
import Glibc
#endif

/// The local terminal of `skywire cli pty start` (docs/pty.md): raw mode (cfmakeraw(3)) while
/// a remote shell runs, the saved settings put back by `restore()` (on exit, on errors, on a
/// terminating signal), and the window size (TIOCGWINSZ).
public final class TerminalMode {
    private let fd: Int32
    private var saved: termios?

    public init(fd: Int32 = STDIN_FILENO) { self.fd = fd }

    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// tcgetattr, cfmakeraw, tcsetattr(TCSAFLUSH). No effect when `fd` is not a terminal.
    public func enterRaw() throws {
        guard Self.isTerminal(fd), saved == nil else { return }
        var original = termios()
        try syscall("tcgetattr") { tcgetattr(fd, &original) }
        var raw = original
        cfmakeraw(&raw)
        try syscall("tcsetattr") { tcsetattr(fd, TCSAFLUSH, &raw) }
        saved = original
    }

    /// Puts the saved settings back (once).
    public func restore() {
        guard var original = saved else { return }
        saved = nil
        _ = tcsetattr(fd, TCSAFLUSH, &original)
    }

    /// The size of the terminal on `fd` (rows, columns), nil when it is not a terminal.
    public static func windowSize(_ fd: Int32) -> (rows: UInt16, columns: UInt16)? {
        var rows: UInt16 = 0, columns: UInt16 = 0
        guard skw_pty_get_window(fd, &rows, &columns) == 0 else { return nil }
        return (rows, columns)
    }

    deinit { restore() }
}

/// Signals read from a descriptor instead of handled in place, so a poll(2) loop sees them: a
/// handler writes each to a pipe (whatever thread the kernel delivers it to); the previous
/// dispositions come back on `close()`. One at a time per process.
public final class SignalDescriptor {
    public let raw: Int32
    private var open = true

    public init(_ signals: [Int32]) throws {
        let count = Int32(signals.count)
        raw = try syscall("sigaction") { skw_signal_pipe_open(signals, count) }
    }

    /// The next caught signal, nil when none.
    public func next() -> Int32? {
        let signal = skw_signal_pipe_next(raw)
        return signal == 0 ? nil : signal
    }

    public func close() {
        guard open else { return }
        open = false
        skw_signal_pipe_close(raw)
    }

    deinit { close() }
}
