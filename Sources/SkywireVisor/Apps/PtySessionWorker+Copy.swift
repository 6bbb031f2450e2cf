import SkywireCrypto
import SkywireSystem
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// `cp-put` and `cp-get` (docs/pty.md, "Copying files"): the file is read or written on the
/// session's thread with that thread's filesystem ids switched to the session user
/// (setfsuid(2)/setfsgid(2) are per thread), streamed in `dataChunk` frames, SHA-256 checked.
extension PtySessionWorker {
    /// How long one poll waits for the client's next frames.
    static let copyPollMilliseconds: Int32 = 1000

    /// A remote path: absolute, or relative to the user's home.
    private func remotePath(for user: SessionUser) throws -> String {
        guard request.argv.count == 1, let path = request.argv.first, !path.isEmpty else {
            throw PtyProtocolError("cp: one remote path expected")
        }
        return path.hasPrefix("/") ? path : user.home + "/" + path
    }

    func receiveFile(as user: SessionUser) throws {
        let path = try remotePath(for: user)
        // Files are opened with the user's ids, not the visor's.
        try user.actOnFilesAsThisUser()
        let (file, tempPath) = try PartialFile.create(beside: path)
        var committed = false
        defer {
            file.close()
            if !committed { unlink(tempPath) }
        }
        logger.info("pty: receiving a file", metadata: ["pk": "\(peer)", "path": "\(path)", "user": "\(user.name)"])
        let hasher = SHA256Stream()
        var received: UInt64 = 0
        var ended = false
        while true {
            let (frames, gone) = link.take()
            for frame in frames {
                switch frame {
                case .stdin(let bytes) where !ended:
                    try bytes.withUnsafeBytes { buffer in
                        var offset = 0
                        while offset < buffer.count {
                            offset += try syscall("write(\(tempPath))") { write(file.raw, buffer.baseAddress! + offset, buffer.count - offset) }
                        }
                        hasher.update(buffer)
                    }
                    received += UInt64(bytes.count)
                    link.consumedInput(bytes.count)
                case .eof where !ended:
                    ended = true
                case .digest(let digest) where ended:
                    guard hasher.finalize() == digest else { throw PtyProtocolError("cp: checksum mismatch: \(path) not written") }
                    try syscall("fchmod(\(tempPath))") { fchmod(file.raw, mode_t(request.fileMode & PtyProtocol.fileModeMask)) }
                    try syscall("fsync(\(tempPath))") { fsync(file.raw) }
                    try syscall("rename(\(path))") { rename(tempPath, path) }
                    committed = true
                    logger.info("pty: file received", metadata: ["pk": "\(peer)", "path": "\(path)", "bytes": "\(received)"])
                    link.send(PtyFrame.exit(.exited(0)).encoded)
                    return
                default:
                    throw PtyProtocolError("cp: unexpected \(frame.type) frame")
                }
            }
            if gone { throw PtyProtocolError("cp: the client went away before the file ended") }
            var fd = pollfd(fd: link.wake.raw, events: Int16(POLLIN), revents: 0)
            _ = poll(&fd, 1, Self.copyPollMilliseconds)
            Self.drainWake(link.wake.raw)
        }
    }

    func sendFile(as user: SessionUser) throws {
        let path = try remotePath(for: user)
        try user.actOnFilesAsThisUser()
        let file = OwnedDescriptor(taking: try syscall("open(\(path))") { open(path, O_RDONLY | O_CLOEXEC) })
        var st = stat()
        try syscall("fstat(\(path))") { fstat(file.raw, &st) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw PtyProtocolError("cp: \(path) is not a regular file") }
        let info = PtyFileInfo(mode: UInt32(st.st_mode) & PtyProtocol.fileModeMask, size: UInt64(st.st_size))
        logger.info("pty: sending a file", metadata: ["pk": "\(peer)", "path": "\(path)", "bytes": "\(info.size)"])
        link.send(PtyFrame.fileInfo(info).encoded)
        let hasher = SHA256Stream()
        var chunk = [UInt8](repeating: 0, count: PtyProtocol.dataChunk)
        var sent: UInt64 = 0
        while true {
            let (frames, gone) = link.take()
            if gone { throw PtyProtocolError("cp: the client went away") }
            if let frame = frames.first { throw PtyProtocolError("cp: unexpected \(frame.type) frame") }
            while link.canSend {
                let n = try chunk.withUnsafeMutableBytes { buffer in
                    try syscall("read(\(path))") { read(file.raw, buffer.baseAddress, buffer.count) }
                }
                if n == 0 {
                    guard sent == info.size else { throw PtyProtocolError("cp: \(path) changed size while it was read") }
                    link.send(PtyFrame.eof.encoded)
                    link.send(PtyFrame.digest(hasher.finalize()).encoded)
                    link.send(PtyFrame.exit(.exited(0)).encoded)
                    return
                }
                var frame: [UInt8] = []
                frame.reserveCapacity(PtyProtocol.headerLength + n)
                chunk.withUnsafeBytes { all in
                    let bytes = UnsafeRawBufferPointer(rebasing: all[0..<n])
                    hasher.update(bytes)
                    PtyFrame.encodeData(.stdout, bytes, into: &frame)
                }
                sent += UInt64(n)
                link.send(frame)
            }
            var fd = pollfd(fd: link.wake.raw, events: Int16(POLLIN), revents: 0)
            _ = poll(&fd, 1, Self.copyPollMilliseconds)
            Self.drainWake(link.wake.raw)
        }
    }
}
