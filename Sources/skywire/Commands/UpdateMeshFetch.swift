import SkywireConfig
import SkywireCrypto
import SkywireSystem
import SkywireVisor
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// `skywire cli update apply --from PK`: fetches a bundle from another visor's `update-server`
/// (docs/update.md, "Delivery over the mesh") over a stream the local visor opens (`stream.open`),
/// into `DIR/NAME.part` (0600), resuming from that file's size when it is there and the server's
/// digest is the one recorded beside it (`NAME.part.sha256`); checks SHA-256 and renames it
/// `DIR/NAME`. Progress on stderr. Blocking I/O: this is a CLI process.
struct UpdateMeshFetch {
    /// Where bundles are fetched to by default: outside /var/lib/skywire, which an update
    /// copies into the new slot (persist.list), so a bundle is not carried into it.
    static let defaultDirectory = "/var/cache/skywire/update"
    static let partSuffix = ".part"
    static let digestSuffix = ".part.sha256"
    /// Bytes per read(2) from the stream.
    static let readChunk = 256 * 1024
    /// A transfer that brings no byte this long is abandoned (rerun to resume).
    static let idleTimeoutMilliseconds: Int32 = 60_000
    /// Progress lines at most this often.
    static let progressInterval: Duration = .milliseconds(1000)
    static let mebibyte = 1024.0 * 1024.0

    let control: ControlOptions
    let pk: String
    let directory: String
    let dialTimeout: Int
    let json: Bool

    /// The bundle's name: `requested`, or the one bundle the server lists.
    func chooseBundle(_ requested: String?) throws -> String {
        if let requested {
            if let problem = UpdateProtocol.nameProblem(requested) { throw UpdateFetchError("--bundle '\(requested)': \(problem)") }
            return requested
        }
        let socket = try open()
        try send(.list, on: socket)
        var decoder = UpdateFrameDecoder()
        switch try readFrame(socket, &decoder) {
        case .listOK(let entries):
            guard let first = entries.first else { throw UpdateFetchError("\(pk) serves no bundle") }
            guard entries.count == 1 else {
                throw UpdateFetchError("\(pk) serves \(entries.count) bundles, choose one with --bundle NAME: "
                                       + entries.map { "\($0.name) (\($0.size) bytes)" }.joined(separator: ", "))
            }
            return first.name
        case .error(let code, let message): throw Self.refusal(code, message)
        case let other: throw UpdateFetchError("the update server answered list with \(other.type)")
        }
    }

    /// Fetches `name`; returns the complete file's path.
    func fetch(_ name: String) throws -> String {
        try FileIO.makeDirectories(directory, mode: 0o700)
        let final = directory + "/" + name, part = final + Self.partSuffix, digestFile = final + Self.digestSuffix
        let recorded = ((try? FileIO.read(digestFile)) ?? nil).map { String(decoding: $0, as: UTF8.self) }
        var offset: UInt64 = 0
        var st = stat()
        if recorded != nil, stat(part, &st) == 0, st.st_mode & S_IFMT == S_IFREG { offset = UInt64(st.st_size) }
        var (socket, header, leftover) = try request(name, from: offset)
        if offset > 0, Self.hex(header.sha256) != recorded || header.size < offset {
            // Another bundle under that name since the partial file was written: start again.
            FileHandleStderr.write("skywire cli update apply: \(name) changed on \(pk) since the partial download; starting again\n")
            offset = 0
            (socket, header, leftover) = try request(name, from: 0)
        }
        try FileIO.overwrite(digestFile, Array(Self.hex(header.sha256).utf8), mode: 0o600)
        let file = OwnedDescriptor(taking: try syscall("open(\(part))") { Glibc.open(part, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600) })
        // One fetch of a name at a time: a second one would write the same file.
        do {
            try syscall("flock(\(part))") { flock(file.raw, LOCK_EX | LOCK_NB) }
        } catch let e as SystemError where e.errno == EWOULDBLOCK {
            throw UpdateFetchError("another fetch of \(name) into \(directory) is running")
        }
        try syscall("fchmod(\(part))") { fchmod(file.raw, 0o600) }
        try syscall("ftruncate(\(part))") { ftruncate(file.raw, off_t(offset)) }
        _ = try syscall("lseek(\(part))") { lseek(file.raw, off_t(offset), SEEK_SET) }
        if offset > 0 { FileHandleStderr.write("skywire cli update apply: resuming \(name) from byte \(offset) of \(header.size)\n") }

        var progress = Progress(name: name, total: header.size, start: offset, json: json)
        var position = offset
        func store(_ bytes: UnsafeRawBufferPointer) throws {
            guard UInt64(bytes.count) <= header.size - position else { throw UpdateFetchError("the update server sent more than \(header.size) bytes") }
            var done = 0
            while done < bytes.count {
                done += try syscall("write(\(part))") { write(file.raw, bytes.baseAddress! + done, bytes.count - done) }
            }
            position += UInt64(bytes.count)
            progress.update(position)
        }
        try leftover.withUnsafeBytes { try store($0) }
        var chunk = [UInt8](repeating: 0, count: Self.readChunk)
        while position < header.size {
            guard try Self.waitReadable(socket) else {
                throw UpdateFetchError("no data from \(pk) for \(Self.idleTimeoutMilliseconds / 1000) s at byte \(position) of \(header.size); rerun to resume")
            }
            let n = try chunk.withUnsafeMutableBytes { buffer in try syscall("read") { read(socket.raw, buffer.baseAddress, buffer.count) } }
            guard n > 0 else {
                throw UpdateFetchError("the transfer from \(pk) ended at byte \(position) of \(header.size); rerun to resume")
            }
            try chunk.withUnsafeBytes { try store(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        progress.finish(position)
        try syscall("fsync(\(part))") { fsync(file.raw) }
        file.close()
        let digest = try Self.sha256(of: part)
        guard digest == header.sha256 else {
            try? FileIO.remove(part)
            try? FileIO.remove(digestFile)
            throw UpdateFetchError("checksum mismatch for \(name): SHA-256 \(Self.hex(digest)), the server announced \(Self.hex(header.sha256)); the partial file was removed")
        }
        try syscall("rename(\(part))") { rename(part, final) }
        try? FileIO.remove(digestFile)
        progress.summary(sha256: Self.hex(digest), path: final)
        return final
    }

    /// Opens a stream to the server and sends `get`; returns the header and the bytes read after it.
    private func request(_ name: String, from offset: UInt64) throws -> (OwnedDescriptor, UpdateGetHeader, [UInt8]) {
        let socket = try open()
        try send(.get(name: name, offset: offset), on: socket)
        var decoder = UpdateFrameDecoder()
        switch try readFrame(socket, &decoder) {
        case .getOK(let header):
            guard header.offset == offset else { throw UpdateFetchError("the update server answered for offset \(header.offset), asked \(offset)") }
            return (socket, header, decoder.takeRemainder())
        case .error(let code, let message): throw Self.refusal(code, message)
        case let other: throw UpdateFetchError("the update server answered get with \(other.type)")
        }
    }

    private func open() throws -> OwnedDescriptor {
        var client = try control.client()
        client.timeout = max(client.timeout, dialTimeout + 5)
        do {
            return try client.openStream(pk: pk, port: AppName.updateServer.defaultPort, timeout: dialTimeout)
        } catch let e as ControlError {
            switch e.code {
            case .forbidden: throw UpdateFetchError("\(pk) refused this visor: its update-server does not list our key (--whitelist) (\(e.message))")
            case .notFound: throw UpdateFetchError("\(pk) runs no update-server (port \(AppName.updateServer.defaultPort)) (\(e.message))")
            case .timeout: throw UpdateFetchError("\(pk) is not reachable: no stream within \(dialTimeout) s (\(e.message))")
            default: throw UpdateFetchError("cannot reach \(pk): \(e.message)")
            }
        }
    }

    /// Sends the request. A server that answered at once (`busy`) and finished may have had the
    /// connection closed before the request went out: EPIPE is then not the error, its answer
    /// (already received) is, so reading goes on.
    private func send(_ frame: UpdateFrame, on socket: OwnedDescriptor) throws {
        let bytes = try frame.encoded()
        do {
            try bytes.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count {
                    done += try syscall("send") { Glibc.send(socket.raw, raw.baseAddress! + done, raw.count - done, Int32(MSG_NOSIGNAL)) }
                }
            }
        } catch let e as SystemError where e.errno == EPIPE || e.errno == ECONNRESET {
            return
        }
    }

    /// Reads until one frame is whole (bounded by the decoder's limits and the idle timeout).
    private func readFrame(_ socket: OwnedDescriptor, _ decoder: inout UpdateFrameDecoder) throws -> UpdateFrame {
        var chunk = [UInt8](repeating: 0, count: UpdateProtocol.maxPayload)
        while true {
            if let frame = try decoder.next() { return frame }
            guard try Self.waitReadable(socket) else {
                throw UpdateFetchError("no answer from \(pk)'s update server within \(Self.idleTimeoutMilliseconds / 1000) s")
            }
            let n = try chunk.withUnsafeMutableBytes { buffer in try syscall("read") { read(socket.raw, buffer.baseAddress, buffer.count) } }
            guard n > 0 else { throw UpdateFetchError("\(pk)'s update server closed the stream without an answer") }
            decoder.feed(chunk[0..<n])
        }
    }

    /// poll(2) for input up to the idle timeout; false when it passed.
    static func waitReadable(_ socket: OwnedDescriptor) throws -> Bool {
        var fds = [pollfd(fd: socket.raw, events: Int16(POLLIN), revents: 0)]
        return try syscall("poll") { poll(&fds, 1, idleTimeoutMilliseconds) } > 0
    }

    static func refusal(_ code: UpdateErrorCode, _ message: String) -> UpdateFetchError {
        switch code {
        case .noSuchBundle: UpdateFetchError("no such bundle: \(message)")
        case .busy: UpdateFetchError("busy: \(message)")
        default: UpdateFetchError("the update server refused: \(message)")
        }
    }

    static func sha256(of path: String) throws -> [UInt8] {
        let fd = OwnedDescriptor(taking: try syscall("open(\(path))") { Glibc.open(path, O_RDONLY | O_CLOEXEC) })
        let hasher = SHA256Stream()
        var chunk = [UInt8](repeating: 0, count: readChunk)
        while true {
            let n = try chunk.withUnsafeMutableBytes { buffer in try syscall("read(\(path))") { read(fd.raw, buffer.baseAddress, buffer.count) } }
            if n == 0 { return hasher.finalize() }
            chunk.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// Progress on stderr: a line per `progressInterval` (JSON lines with `--json`).
    struct Progress {
        let name: String
        let total: UInt64
        let start: UInt64
        let json: Bool
        let began = ContinuousClock.now
        var lastShown = ContinuousClock.now

        init(name: String, total: UInt64, start: UInt64, json: Bool) {
            self.name = name
            self.total = total
            self.start = start
            self.json = json
        }

        mutating func update(_ position: UInt64) {
            let now = ContinuousClock.now
            guard now - lastShown >= UpdateMeshFetch.progressInterval else { return }
            lastShown = now
            show(position, done: false)
        }

        mutating func finish(_ position: UInt64) { show(position, done: true) }

        private var seconds: Double {
            let (s, atto) = (ContinuousClock.now - began).components
            return Double(s) + Double(atto) / 1e18
        }

        private func show(_ position: UInt64, done: Bool) {
            let received = position - start
            let rate = seconds > 0 ? Double(received) / seconds : 0
            let percent = total == 0 ? 100 : Int(position * 100 / total)
            if json {
                let line = ControlValue.object([
                    "event": .string(done ? "fetched" : "progress"), "bundle": .string(name), "bytes": .int(Int64(position)),
                    "total": .int(Int64(total)), "received": .int(Int64(received)), "percent": .int(Int64(percent)),
                    "bytes_per_second": .int(Int64(rate)),
                ]).json.compact()
                FileHandleStderr.write(line + "\n")
            } else {
                let mib = { (n: Double) -> String in
                    let tenths = Int((n / UpdateMeshFetch.mebibyte * 10).rounded())
                    return "\(tenths / 10).\(tenths % 10)"
                }
                FileHandleStderr.write("\(name): \(mib(Double(position))) / \(mib(Double(total))) MiB (\(percent)%), \(mib(rate)) MiB/s"
                                       + (done ? ", received \(received) bytes\n" : "\n"))
            }
        }

        func summary(sha256: String, path: String) {
            guard !json else { return }
            FileHandleStderr.write("skywire cli update apply: \(path): SHA-256 \(sha256) verified\n")
        }
    }
}

/// A failed fetch, with the message the CLI prints.
struct UpdateFetchError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
