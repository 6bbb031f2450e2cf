import SkywireCrypto
import SkywireSystem
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// `pty cp` (docs/pty.md, "Copying files"): files streamed in chunks with back-pressure (never
/// held whole), SHA-256 checked by the receiver, permission bits kept, written beside the
/// destination and renamed over it only when complete.
extension PtyClient {
    /// Sends the local file `local` to `remote` on the host; returns the bytes sent.
    static func put(_ session: PtyClientSession, local: String, remote: String) throws -> UInt64 {
        let file = OwnedDescriptor(taking: try syscall("open(\(local))") { open(local, O_RDONLY | O_CLOEXEC) })
        var st = stat()
        try syscall("fstat(\(local))") { fstat(file.raw, &st) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw PtyClientError("\(local) is not a regular file") }
        let target = remote.hasSuffix("/") ? remote + baseName(local) : remote
        session.send(.open(PtyOpenRequest(mode: .copyPut, argv: [target], fileMode: UInt32(st.st_mode) & PtyProtocol.fileModeMask)))
        let hasher = SHA256Stream()
        var sent: UInt64 = 0
        var reading = true
        while reading {
            try session.flush()
            while reading, session.canQueue {
                let before = session.queuedBytes
                reading = try session.forward(from: file.raw, as: .stdin, hasher: hasher)
                if reading { sent += UInt64(session.queuedBytes - before - PtyProtocol.headerLength) }
            }
            if !reading { break }
            let ready = session.wait(for: [], timeoutMilliseconds: -1)
            if ready.socket & Int16(POLLIN) != 0 {
                // Only an error can come before the end; anything else is a protocol fault.
                for frame in try session.receive() {
                    if case .error(let message) = frame { throw PtyClientError("remote: \(message)") }
                    throw PtyClientError("the remote visor sent an unexpected \(frame.type) frame")
                }
                if session.socketClosed { throw PtyClientError("the session ended before the copy completed") }
            }
        }
        guard sent == UInt64(st.st_size) else { throw PtyClientError("\(local) changed size while it was read") }
        session.send(.eof)
        session.send(.digest(hasher.finalize()))
        let status = try pump(session) { frame -> PtyExitStatus? in
            guard case .exit(let status) = frame else { throw PtyClientError("the remote visor sent an unexpected \(frame.type) frame") }
            return status
        }
        guard status == .exited(0) else { throw PtyClientError("remote: the copy ended with \(status)") }
        return sent
    }

    /// Fetches `remote` from the host into `local` (a directory: the remote name inside it).
    static func get(_ session: PtyClientSession, remote: String, local: String) throws -> UInt64 {
        var st = stat()
        let target = stat(local, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR ? local + "/" + baseName(remote) : local
        session.send(.open(PtyOpenRequest(mode: .copyGet, argv: [remote])))
        let (file, partial) = try PartialFile.create(beside: target)
        var committed = false
        defer {
            file.close()
            if !committed { unlink(partial) }
        }
        var info: PtyFileInfo?
        let hasher = SHA256Stream()
        var received: UInt64 = 0
        var ended = false
        var verified = false
        let status = try pump(session) { frame -> PtyExitStatus? in
            switch frame {
            case .fileInfo(let i) where info == nil: info = i
            case .stdout(let bytes) where info != nil && !ended:
                received += UInt64(bytes.count)
                guard received <= info?.size ?? 0 else { throw PtyClientError("remote: more bytes than announced") }
                hasher.update(bytes)
                try PtyClientSession.writeAll(file.raw, bytes)
            case .eof where info != nil && !ended: ended = true
            case .digest(let digest) where ended && !verified:
                guard hasher.finalize() == digest else { throw PtyClientError("checksum mismatch: \(target) not written") }
                guard received == info?.size else { throw PtyClientError("\(received) bytes received, \(info?.size ?? 0) announced") }
                verified = true
            case .exit(let status) where verified: return status
            default: throw PtyClientError("the remote visor sent an unexpected \(frame.type) frame")
            }
            return nil
        }
        guard status == .exited(0) else { throw PtyClientError("remote: the copy ended with \(status)") }
        try syscall("fchmod(\(partial))") { fchmod(file.raw, mode_t(info?.mode ?? 0o600)) }
        try syscall("fsync(\(partial))") { fsync(file.raw) }
        try syscall("rename(\(target))") { rename(partial, target) }
        committed = true
        return received
    }

    static func baseName(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}
