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

/// Signals read from a descriptor (signalfd(2)) instead of handlers, so a poll(2) loop sees them;
/// blocked while this lives, the previous mask put back by `close()`.
public final class SignalDescriptor {
    public let raw: Int32
    private var previous: [UInt8]
    private var open = true

    public init(_ signals: [Int32]) throws {
        previous = [UInt8](repeating: 0, count: skw_sigset_size())
        let count = Int32(signals.count)
        raw = try previous.withUnsafeMutableBytes { saved in
            try syscall("signalfd") { skw_signalfd_open(signals, count, saved.baseAddress, saved.count) }
        }
    }

    /// The next pending signal, nil when none.
    public func next() -> Int32? {
        let signal = skw_signalfd_next(raw)
        return signal == 0 ? nil : signal
    }

    public func close() {
        guard open else { return }
        open = false
        previous.withUnsafeBytes { skw_signalfd_close(raw, $0.baseAddress) }
    }

    deinit { close() }
}
